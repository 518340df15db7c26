//! Audience preview: who an audience would reach now.

use std::collections::BTreeSet;

use herald_domain::plan::{AudiencePlan, count_by_variant, plan_audience};
use herald_domain::{Audience, Category, Group, ReceiverKind};

use crate::{AppResult, Herald};

impl Herald {
    /// Who `audience` would reach now, per city, which include-list ids are not receivers, and
    /// who it would leave out for having opted out of `opt_out` (a message's
    /// `opt_out_category`: `None` for a critical one, or when no category is given).
    pub async fn preview(
        &self,
        kind: ReceiverKind,
        audience: &Audience,
        opt_out: Option<Category>,
    ) -> AppResult<AudiencePlan> {
        Ok(plan_audience(self.ports.console.receivers.as_ref(), kind, audience, opt_out).await?)
    }

    /// How many of those `audience` would reach each variant naming `variant_groups` would show
    /// to, and the default content the last (`herald_domain::plan::count_by_variant`).
    pub async fn preview_by_variant(
        &self,
        kind: ReceiverKind,
        audience: &Audience,
        opt_out: Option<Category>,
        variant_groups: &[BTreeSet<Group>],
    ) -> AppResult<Vec<u64>> {
        let directory = self.ports.console.receivers.as_ref();
        Ok(count_by_variant(directory, kind, audience, opt_out, variant_groups).await?)
    }
}
