//! `/api/agents`: agent definitions (`riya` → kind `echo`, settings, greeting).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};

use super::error::{ApiError, ErrorBody};
use super::json_body::{JsonBody, Reply};
use crate::agent::{OnFailure, sealed};
use crate::app::AppState;
use crate::store::{AgentDef, AgentInput};

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct AgentList {
    /// The agents defined through the API.
    agents: Vec<AgentDef>,
    /// The kinds an agent may have (built-in agents go by their kind).
    kinds: Vec<String>,
}

#[utoipa::path(get, path = "/api/agents", operation_id = "list_agents", tag = "agents",
    responses((status = 200, description = "Every agent, and the kinds", body = AgentList)))]
pub(crate) async fn list(State(app): State<Arc<AppState>>) -> Result<Reply<AgentList>, ApiError> {
    let agents = app.store.agents().await?;
    Ok(Reply(AgentList { agents, kinds: app.agents.ids().into_iter().map(String::from).collect() }))
}

#[utoipa::path(get, path = "/api/agents/{id}", operation_id = "get_agent", tag = "agents",
    params(("id" = String, Path, description = "The agent's id")),
    responses(
        (status = 200, description = "The agent", body = AgentDef),
        (status = 404, description = "No such agent", body = ErrorBody),
    ))]
pub(crate) async fn show(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Reply<AgentDef>, ApiError> {
    let a = app.store.agent(&id).await?.ok_or_else(|| ApiError::not_found(format!("no agent {id:?}")))?;
    Ok(Reply(a))
}

/// Defines an agent; its settings are checked against its kind now (400 naming the field).
#[utoipa::path(post, path = "/api/agents", operation_id = "create_agent", tag = "agents", request_body = AgentInput,
    responses(
        (status = 201, description = "The agent, as stored", body = AgentDef,
            links(("get_agent" = (operation_id = "get_agent", parameters(("id" = "$response.body#/id")))), ("put_agent" = (operation_id = "put_agent", parameters(("id" = "$response.body#/id")))), ("patch_agent" = (operation_id = "patch_agent", parameters(("id" = "$response.body#/id")))), ("delete_agent" = (operation_id = "delete_agent", parameters(("id" = "$response.body#/id")))))),
        (status = 400, description = "A missing or bad field, named (`settings.url: …`)", body = ErrorBody),
        (status = 409, description = "An agent has this id already", body = ErrorBody),
    ))]
pub(crate) async fn create(
    State(app): State<Arc<AppState>>,
    JsonBody(input): JsonBody<AgentInput>,
) -> Result<(StatusCode, Reply<AgentDef>), ApiError> {
    let id =
        input.id.clone().filter(|i| !i.trim().is_empty()).ok_or_else(|| ApiError::bad_request("missing field `id`"))?;
    if app.store.agent(&id).await?.is_some() {
        return Err(ApiError::conflict(format!("agent {id:?} already exists")));
    }
    save(&app, &id, &input, true).await.map(|v| (StatusCode::CREATED, v))
}

/// Changes an agent: absent fields keep their value (PUT and PATCH alike).
#[utoipa::path(put, path = "/api/agents/{id}", operation_id = "put_agent", tag = "agents", request_body = AgentInput,
    params(("id" = String, Path, description = "The agent's id")),
    responses(
        (status = 200, description = "The agent, as stored", body = AgentDef),
        (status = 400, description = "A bad field, named", body = ErrorBody),
        (status = 404, description = "No such agent", body = ErrorBody),
    ))]
pub(crate) async fn put(
    app: State<Arc<AppState>>,
    id: Path<String>,
    input: JsonBody<AgentInput>,
) -> Result<Reply<AgentDef>, ApiError> {
    update(app, id, input).await
}

/// Changes an agent: absent fields keep their value.
#[utoipa::path(patch, path = "/api/agents/{id}", operation_id = "patch_agent", tag = "agents", request_body = AgentInput,
    params(("id" = String, Path, description = "The agent's id")),
    responses(
        (status = 200, description = "The agent, as stored", body = AgentDef),
        (status = 400, description = "A bad field, named", body = ErrorBody),
        (status = 404, description = "No such agent", body = ErrorBody),
    ))]
pub(crate) async fn patch(
    app: State<Arc<AppState>>,
    id: Path<String>,
    input: JsonBody<AgentInput>,
) -> Result<Reply<AgentDef>, ApiError> {
    update(app, id, input).await
}

async fn update(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<AgentInput>,
) -> Result<Reply<AgentDef>, ApiError> {
    if app.store.agent(&id).await?.is_none() {
        return Err(ApiError::not_found(format!("no agent {id:?}")));
    }
    save(&app, &id, &input, false).await
}

#[utoipa::path(delete, path = "/api/agents/{id}", operation_id = "delete_agent", tag = "agents",
    params(("id" = String, Path, description = "The agent's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such agent", body = ErrorBody),
    ))]
pub(crate) async fn delete(State(app): State<Arc<AppState>>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    if !app.store.delete_agent(&id).await? {
        return Err(ApiError::not_found(format!("no agent {id:?}")));
    }
    app.config_changed().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Checks and stores the agent; `create` only if no agent has the id (a concurrent create that
/// won meanwhile makes this one a 409, never an overwrite).
async fn save(app: &AppState, id: &str, input: &AgentInput, create: bool) -> Result<Reply<AgentDef>, ApiError> {
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
    crate::agent::record_setting(&settings).map_err(check)?;
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
    Ok(Reply(a))
}
