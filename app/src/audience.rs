//! Audience preview: who an audience would reach now.

use herald_domain::plan::{AudiencePlan, plan_audience};
use herald_domain::{Audience, ReceiverKind};

use crate::{AppResult, Herald};

impl Herald {
    /// Who `audience` would reach now, per city, and which include-list ids are not receivers.
    pub async fn preview(&self, kind: ReceiverKind, audience: &Audience) -> AppResult<AudiencePlan> {
        Ok(plan_audience(self.ports.console.receivers.as_ref(), kind, audience).await?)
    }
}
