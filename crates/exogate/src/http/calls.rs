//! The call log as JSON.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use crate::app::AppState;
use crate::store::CallFilter;

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    status: Option<String>,
    phone: Option<String>,
    agent: Option<String>,
    direction: Option<String>,
    /// Created at or after (RFC 3339 or YYYY-MM-DD).
    since: Option<String>,
    /// Created before.
    until: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
    page: Option<i64>,
}

pub(crate) async fn list(
    State(app): State<Arc<AppState>>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit must be between 1 and {MAX_LIMIT}")));
    }
    let offset = match (q.offset, q.page) {
        (Some(o), _) if o >= 0 => o,
        (Some(_), _) => return Err(ApiError::bad_request("offset must be ≥ 0")),
        (None, Some(p)) if p >= 1 => (p - 1) * limit,
        (None, Some(_)) => return Err(ApiError::bad_request("page starts at 1")),
        (None, None) => 0,
    };
    let nonempty = |v: Option<String>| v.filter(|s| !s.is_empty());
    let filter = CallFilter {
        status: nonempty(q.status),
        phone: nonempty(q.phone),
        agent: nonempty(q.agent),
        direction: nonempty(q.direction),
        since: nonempty(q.since).map(|d| date_bound("since", d)).transpose()?,
        until: nonempty(q.until).map(|d| date_bound("until", d)).transpose()?,
        limit,
        offset,
    };
    let (calls, total) = app.store.list_calls(&filter).await?;
    Ok(Json(json!({ "calls": calls, "total": total, "limit": limit, "offset": offset })))
}

/// By our id, Exotel's CallSid or the stream_sid; with the call's timeline.
pub(crate) async fn show(State(app): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let call = app.store.find_call(&id).await?.ok_or_else(|| ApiError::not_found(format!("no call {id:?}")))?;
    let events = app.store.events(&call.id).await?;
    let mut v = serde_json::to_value(&call).map_err(anyhow::Error::from)?;
    if let Some(obj) = v.as_object_mut() {
        obj.insert("events".into(), serde_json::to_value(events).map_err(anyhow::Error::from)?);
    }
    Ok(Json(v))
}

/// Accepts `2026-11-21` or an RFC 3339 time; answers the UTC RFC 3339 text created_at is stored as.
fn date_bound(name: &str, value: String) -> Result<String, ApiError> {
    use time::format_description::well_known::Rfc3339;
    let bad =
        || ApiError::bad_request(format!("{name} must be a date (YYYY-MM-DD) or an RFC 3339 time, got {value:?}"));
    if let Ok(t) = time::OffsetDateTime::parse(&value, &Rfc3339) {
        return t.to_offset(time::UtcOffset::UTC).format(&Rfc3339).map_err(|_| bad());
    }
    let date =
        time::Date::parse(&value, time::macros::format_description!("[year]-[month]-[day]")).map_err(|_| bad())?;
    date.midnight().assume_utc().format(&Rfc3339).map_err(|_| bad())
}
