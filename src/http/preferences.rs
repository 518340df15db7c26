//! The apps' preferences: the categories a receiver opted out of.

use axum::Json;
use axum::extract::State;
use herald_domain::Preferences;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::App;
use super::error::{ApiResult, ValidJson};
use super::openapi::{self as doc, NeedsToken, ReadsBody, UsesBackend};

/// What a receiver opted out of. `system` messages and force-read notices always arrive.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreferencesBody {
    /// Categories whose messages this receiver does not get (`activity`, `announcement`); empty
    /// for all of them.
    #[schema(schema_with = doc::opted_out)]
    opted_out: Vec<String>,
}

impl From<&Preferences> for PreferencesBody {
    fn from(prefs: &Preferences) -> Self {
        Self { opted_out: prefs.opted_out().map(|c| c.as_str().to_owned()).collect() }
    }
}

/// The categories this receiver opted out of.
#[utoipa::path(get, path = "/app/v1/preferences", tag = "app", security(("app_token" = [])),
    responses((status = 200, body = PreferencesBody), NeedsToken, UsesBackend))]
pub async fn get_preferences(State(state): State<AppState>, App(me): App) -> ApiResult<Json<PreferencesBody>> {
    Ok(Json(PreferencesBody::from(&state.herald.preferences(&me).await?)))
}

/// Replaces the categories this receiver opted out of. Broadcasts of a category opted out of are
/// left out from then on; opting back in brings that category's still-valid broadcasts back, as a
/// receiver joining late gets them. `system` cannot be opted out of (422).
#[utoipa::path(put, path = "/app/v1/preferences", tag = "app", security(("app_token" = [])),
    request_body = PreferencesBody,
    responses((status = 200, body = PreferencesBody), NeedsToken, ReadsBody, UsesBackend))]
pub async fn put_preferences(
    State(state): State<AppState>,
    App(me): App,
    ValidJson(body, _): ValidJson<PreferencesBody>,
) -> ApiResult<Json<PreferencesBody>> {
    let prefs = Preferences::parse("opted_out", &body.opted_out)?;
    Ok(Json(PreferencesBody::from(&state.herald.set_preferences(&me, prefs).await?)))
}
