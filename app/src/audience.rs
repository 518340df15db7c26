//! Audience preview: who an audience would reach now.

use herald_domain::plan::{AudiencePlan, plan_audience};
use herald_domain::{Audience, Category, ReceiverKind};

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
}
