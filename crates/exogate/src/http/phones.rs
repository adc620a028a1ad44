//! `/api/phones`: ExoPhones with their own Exotel credentials. Tokens go in, never come out.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;

use super::error::{ApiError, ErrorBody};
use super::json_body::{JsonBody, Reply};
use crate::app::AppState;
use crate::store::{Phone, PhoneInput};

/// A phone as the API shows it: everything but its token, which it has.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct PhoneView {
    #[serde(flatten)]
    phone: Phone,
    /// Always true: the token is stored (encrypted), never shown.
    has_token: bool,
}

fn view(phone: Phone) -> Reply<PhoneView> {
    Reply(PhoneView { phone, has_token: true })
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct PhoneList {
    phones: Vec<PhoneView>,
}

#[utoipa::path(get, path = "/api/phones", operation_id = "list_phones", tag = "phones",
    responses((status = 200, description = "Every phone", body = PhoneList)))]
pub(crate) async fn list(State(app): State<Arc<AppState>>) -> Result<Reply<PhoneList>, ApiError> {
    let phones = app.store.phones().await?.into_iter().map(|phone| PhoneView { phone, has_token: true }).collect();
    Ok(Reply(PhoneList { phones }))
}

#[utoipa::path(get, path = "/api/phones/{id}", operation_id = "get_phone", tag = "phones",
    params(("id" = String, Path, description = "The phone's id or number")),
    responses(
        (status = 200, description = "The phone", body = PhoneView),
        (status = 404, description = "No such phone", body = ErrorBody),
    ))]
pub(crate) async fn show(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Reply<PhoneView>, ApiError> {
    let p = app.store.phone(&id).await?.ok_or_else(|| ApiError::not_found(format!("no phone {id:?}")))?;
    Ok(view(p))
}

/// Adds a phone: `number`, `account_sid` (or `sid`), `api_key` and `api_token` are required.
#[utoipa::path(post, path = "/api/phones", operation_id = "create_phone", tag = "phones", request_body = PhoneInput,
    responses(
        (status = 201, description = "The phone, as stored", body = PhoneView,
            links(("get_phone" = (operation_id = "get_phone", parameters(("id" = "$response.body#/id")))), ("put_phone" = (operation_id = "put_phone", parameters(("id" = "$response.body#/id")))), ("patch_phone" = (operation_id = "patch_phone", parameters(("id" = "$response.body#/id")))), ("delete_phone" = (operation_id = "delete_phone", parameters(("id" = "$response.body#/id")))))),
        (status = 400, description = "A missing or bad field, named", body = ErrorBody),
        (status = 409, description = "A phone has this id or number already", body = ErrorBody),
    ))]
pub(crate) async fn create(
    State(app): State<Arc<AppState>>,
    JsonBody(input): JsonBody<PhoneInput>,
) -> Result<(StatusCode, Reply<PhoneView>), ApiError> {
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
        if unique_violation(&e) {
            return Err(ApiError::conflict(format!("phone {id:?} or its number already exists")));
        }
        return Err(e.into());
    }
    app.config_changed().await?;
    let p = app.store.phone(&id).await?.ok_or_else(|| anyhow::anyhow!("phone vanished after insert"))?;
    Ok((StatusCode::CREATED, view(p)))
}

/// Changes a phone: absent fields keep their value (PUT and PATCH alike).
#[utoipa::path(put, path = "/api/phones/{id}", operation_id = "put_phone", tag = "phones", request_body = PhoneInput,
    params(("id" = String, Path, description = "The phone's id or number")),
    responses(
        (status = 200, description = "The phone, as stored", body = PhoneView),
        (status = 400, description = "A bad field, named", body = ErrorBody),
        (status = 404, description = "No such phone", body = ErrorBody),
        (status = 409, description = "Another phone has this number", body = ErrorBody),
    ))]
pub(crate) async fn put(
    app: State<Arc<AppState>>,
    id: Path<String>,
    input: JsonBody<PhoneInput>,
) -> Result<Reply<PhoneView>, ApiError> {
    update(app, id, input).await
}

/// Changes a phone: absent fields keep their value.
#[utoipa::path(patch, path = "/api/phones/{id}", operation_id = "patch_phone", tag = "phones", request_body = PhoneInput,
    params(("id" = String, Path, description = "The phone's id or number")),
    responses(
        (status = 200, description = "The phone, as stored", body = PhoneView),
        (status = 400, description = "A bad field, named", body = ErrorBody),
        (status = 404, description = "No such phone", body = ErrorBody),
        (status = 409, description = "Another phone has this number", body = ErrorBody),
    ))]
pub(crate) async fn patch(
    app: State<Arc<AppState>>,
    id: Path<String>,
    input: JsonBody<PhoneInput>,
) -> Result<Reply<PhoneView>, ApiError> {
    update(app, id, input).await
}

async fn update(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<PhoneInput>,
) -> Result<Reply<PhoneView>, ApiError> {
    check(&app, &input)?;
    let phone = app.store.phone(&id).await?.ok_or_else(|| ApiError::not_found(format!("no phone {id:?}")))?;
    if let Err(e) = app.store.update_phone(&app.secrets, &phone.id, &input).await {
        if unique_violation(&e) {
            let number = input.number.as_deref().unwrap_or_default();
            return Err(ApiError::conflict(format!("another phone has the number {number:?}")));
        }
        return Err(e.into());
    }
    app.config_changed().await?;
    let p = app.store.phone(&phone.id).await?.ok_or_else(|| ApiError::not_found(format!("no phone {id:?}")))?;
    Ok(view(p))
}

#[utoipa::path(delete, path = "/api/phones/{id}", operation_id = "delete_phone", tag = "phones",
    params(("id" = String, Path, description = "The phone's id or number")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such phone", body = ErrorBody),
    ))]
pub(crate) async fn delete(State(app): State<Arc<AppState>>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let phone = app.store.phone(&id).await?.ok_or_else(|| ApiError::not_found(format!("no phone {id:?}")))?;
    app.store.delete_phone(&phone.id).await?;
    app.config_changed().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The database refused a second phone with the same id or number.
fn unique_violation(e: &anyhow::Error) -> bool {
    e.chain()
        .find_map(|c| c.downcast_ref::<sqlx::Error>())
        .is_some_and(|db| matches!(db, sqlx::Error::Database(d) if d.kind() == sqlx::error::ErrorKind::UniqueViolation))
}

/// What a phone must hold to dial Exotel, checked for the fields given (create also needs them
/// all), so a phone saved here never fails a call later.
fn check(app: &AppState, p: &PhoneInput) -> Result<(), ApiError> {
    for (field, value) in [("id", &p.id), ("account_sid", &p.account_sid), ("api_key", &p.api_key)] {
        if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
            return Err(ApiError::bad_request(format!("{field} is empty")));
        }
    }
    if p.api_token.as_deref().is_some_and(str::is_empty) {
        return Err(ApiError::bad_request("api_token is empty"));
    }
    if let Some(sid) = &p.account_sid {
        if !sid.trim().chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
            return Err(ApiError::bad_request("account_sid may only hold letters, digits, '-', '_' and '.'"));
        }
    }
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
