//! `/api/phones`: ExoPhones with their own Exotel credentials. Tokens go in, never come out.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::error::ApiError;
use super::json_body::JsonBody;
use crate::app::AppState;
use crate::store::{Phone, PhoneInput};

fn view(p: Phone) -> Value {
    let mut v = serde_json::to_value(p).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("has_token".into(), json!(true));
    }
    v
}

pub(crate) async fn list(State(app): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let phones: Vec<Value> = app.store.phones().await?.into_iter().map(view).collect();
    Ok(Json(json!({ "phones": phones })))
}

pub(crate) async fn show(State(app): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let p = app.store.phone(&id).await?.ok_or_else(|| ApiError::not_found(format!("no phone {id:?}")))?;
    Ok(Json(view(p)))
}

pub(crate) async fn create(
    State(app): State<Arc<AppState>>,
    JsonBody(input): JsonBody<PhoneInput>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    for (field, value) in [
        ("number", &input.number),
        ("account_sid", &input.account_sid),
        ("api_key", &input.api_key),
        ("api_token", &input.api_token),
    ] {
        if value.as_deref().is_none_or(|v| v.trim().is_empty()) {
            return Err(ApiError::bad_request(format!("missing field `{field}`")));
        }
    }
    check(&app, &input)?;
    let id = input.id.clone().unwrap_or_else(crate::ids::call_id);
    if app.store.phone(&id).await?.is_some()
        || app.store.phone(input.number.as_deref().unwrap_or_default()).await?.is_some()
    {
        return Err(ApiError::conflict(format!("phone {id:?} or its number already exists")));
    }
    // Two creates racing past the check above: the database's unique keys pick one.
    if let Err(e) = app.store.insert_phone(&app.secrets, &input, &id).await {
        let unique = e.chain().find_map(|c| c.downcast_ref::<sqlx::Error>()).is_some_and(
            |db| matches!(db, sqlx::Error::Database(d) if d.kind() == sqlx::error::ErrorKind::UniqueViolation),
        );
        if unique {
            return Err(ApiError::conflict(format!("phone {id:?} or its number already exists")));
        }
        return Err(e.into());
    }
    app.config_changed().await?;
    let p = app.store.phone(&id).await?.ok_or_else(|| anyhow::anyhow!("phone vanished after insert"))?;
    Ok((StatusCode::CREATED, Json(view(p))))
}

pub(crate) async fn update(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<PhoneInput>,
) -> Result<Json<Value>, ApiError> {
    check(&app, &input)?;
    let phone = app.store.phone(&id).await?.ok_or_else(|| ApiError::not_found(format!("no phone {id:?}")))?;
    app.store.update_phone(&app.secrets, &phone.id, &input).await?;
    app.config_changed().await?;
    let p = app.store.phone(&phone.id).await?.ok_or_else(|| ApiError::not_found(format!("no phone {id:?}")))?;
    Ok(Json(view(p)))
}

pub(crate) async fn delete(State(app): State<Arc<AppState>>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let phone = app.store.phone(&id).await?.ok_or_else(|| ApiError::not_found(format!("no phone {id:?}")))?;
    app.store.delete_phone(&phone.id).await?;
    app.config_changed().await?;
    Ok(StatusCode::NO_CONTENT)
}

fn check(app: &AppState, p: &PhoneInput) -> Result<(), ApiError> {
    if let Some(n) = &p.number {
        if !crate::dialer::phone_like(n) {
            return Err(ApiError::bad_request(format!("number {n:?} is not a phone number")));
        }
    }
    if let Some(s) = &p.subdomain {
        if !matches!(s.as_str(), "api.exotel.com" | "api.in.exotel.com") {
            return Err(ApiError::bad_request("subdomain must be api.exotel.com or api.in.exotel.com"));
        }
    }
    if let Some(a) = &p.default_agent {
        if !app.agent_exists(a) {
            return Err(ApiError::bad_request(format!("default_agent {a:?} is not a known agent")));
        }
    }
    if p.max_concurrent.is_some_and(|m| m < 1) {
        return Err(ApiError::bad_request("max_concurrent must be at least 1"));
    }
    Ok(())
}
