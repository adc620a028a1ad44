//! `/api/agents`: agent definitions (`riya` → kind `echo`, settings, greeting).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::error::ApiError;
use super::json_body::JsonBody;
use crate::agent::{OnFailure, sealed};
use crate::app::AppState;
use crate::store::AgentInput;

pub(crate) async fn list(State(app): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let defs = app.store.agents().await?;
    Ok(Json(json!({ "agents": defs, "kinds": app.agents.ids() })))
}

pub(crate) async fn show(State(app): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let a = app.store.agent(&id).await?.ok_or_else(|| ApiError::not_found(format!("no agent {id:?}")))?;
    Ok(Json(serde_json::to_value(a).map_err(anyhow::Error::from)?))
}

pub(crate) async fn create(
    State(app): State<Arc<AppState>>,
    JsonBody(input): JsonBody<AgentInput>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id =
        input.id.clone().filter(|i| !i.trim().is_empty()).ok_or_else(|| ApiError::bad_request("missing field `id`"))?;
    if app.store.agent(&id).await?.is_some() {
        return Err(ApiError::conflict(format!("agent {id:?} already exists")));
    }
    save(&app, &id, &input, true).await.map(|v| (StatusCode::CREATED, v))
}

pub(crate) async fn update(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<AgentInput>,
) -> Result<Json<Value>, ApiError> {
    if app.store.agent(&id).await?.is_none() {
        return Err(ApiError::not_found(format!("no agent {id:?}")));
    }
    save(&app, &id, &input, false).await
}

pub(crate) async fn delete(State(app): State<Arc<AppState>>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    if !app.store.delete_agent(&id).await? {
        return Err(ApiError::not_found(format!("no agent {id:?}")));
    }
    app.config_changed().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Checks and stores the agent; `create` only if no agent has the id (a concurrent create that
/// won meanwhile makes this one a 409, never an overwrite).
async fn save(app: &AppState, id: &str, input: &AgentInput, create: bool) -> Result<Json<Value>, ApiError> {
    if !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) || id.len() > 64 {
        return Err(ApiError::bad_request("id must be 1-64 letters, digits, '-', '_' or '.'"));
    }
    if let Some(kind) = &input.kind {
        if !app.agents.contains(kind) {
            return Err(ApiError::bad_request(format!("kind {kind:?} is not one of: {}", app.agents.ids().join(", "))));
        }
    }
    if input.settings.as_ref().is_some_and(|s| !s.is_object()) {
        return Err(ApiError::bad_request("settings must be a JSON object"));
    }
    // Settings are checked now, against the kind the agent will have, not when a call arrives.
    let stored = app.store.agent(id).await?;
    let kind = input.kind.clone().or_else(|| stored.as_ref().map(|a| a.kind.clone())).unwrap_or_else(|| "echo".into());
    let stored_settings = stored.as_ref().and_then(|a| serde_json::from_str::<Value>(&a.settings).ok());
    // Checked in clear: a secret sent back as the mask (or left out) is the stored one.
    let settings = match (&input.settings, &stored_settings) {
        (Some(s), stored) => sealed::merge(s, stored.as_ref(), &app.secrets)?,
        (None, Some(stored)) => sealed::open(stored, &app.secrets),
        (None, None) => json!({}),
    };
    let factory = app.agents.get(&kind).ok_or_else(|| ApiError::bad_request(format!("unknown kind {kind:?}")))?;
    let check = |e: crate::agent::SettingsError| ApiError::bad_request(e.to_string());
    factory.validate(&settings).map_err(check)?;
    crate::agent::failure_prompt(&settings).map_err(check)?;
    if let crate::agent::OnFailure::Agent(other) = OnFailure::parse(&settings).map_err(check)? {
        if other == id {
            return Err(ApiError::bad_request("settings.on_failure: an agent cannot fall back to itself"));
        }
        if !app.agent_exists(&other) {
            return Err(ApiError::bad_request(format!("settings.on_failure: no agent {other:?}")));
        }
    }
    let mut input = input.clone();
    if input.settings.is_some() {
        input.settings = Some(sealed::seal(&settings, &app.secrets)?);
    }
    let input = &input;
    if create {
        if !app.store.insert_agent(id, input).await? {
            return Err(ApiError::conflict(format!("agent {id:?} already exists")));
        }
    } else {
        app.store.upsert_agent(id, input).await?;
    }
    app.config_changed().await?;
    let a = app.store.agent(id).await?.ok_or_else(|| anyhow::anyhow!("agent vanished after save"))?;
    Ok(Json(serde_json::to_value(a).map_err(anyhow::Error::from)?))
}
