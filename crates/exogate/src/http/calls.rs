//! The call log as JSON.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ErrorBody};
use super::json_body::Reply;
use crate::app::AppState;
use crate::store::{CallFilter, CallRow, EventRow};

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// `queued`, `connecting`, `ringing`, `in-progress`, `completed`, `failed`, `busy`, `no-answer`,
    /// `canceled` or `interrupted`.
    status: Option<String>,
    /// A phone's id.
    phone: Option<String>,
    agent: Option<String>,
    /// `inbound` or `outbound-api`.
    direction: Option<String>,
    /// Created at or after (RFC 3339 or YYYY-MM-DD).
    since: Option<String>,
    /// Created before.
    until: Option<String>,
    /// Calls per page (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// Calls skipped; wins over `page`.
    #[param(minimum = 0)]
    offset: Option<i64>,
    /// 1-based page of `limit` calls.
    #[param(minimum = 1)]
    page: Option<i64>,
}

/// A page of the call log, newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct CallList {
    calls: Vec<CallRow>,
    /// Calls matching the filter, on every page.
    total: i64,
    limit: i64,
    offset: i64,
}

/// A call with its timeline.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct CallDetail {
    #[serde(flatten)]
    call: CallRow,
    events: Vec<EventRow>,
    /// The call's recording (a stereo WAV: caller left, bot right), once it is complete; GET it
    /// with the key or the console's session. Exotel's own is `recording_url`.
    recording: Option<String>,
}

/// The call log, newest first.
#[utoipa::path(get, path = "/api/calls", operation_id = "list_calls", tag = "calls", params(ListQuery),
    responses(
        (status = 200, description = "A page of calls", body = CallList),
        (status = 400, description = "A bad filter or page, named", body = ErrorBody),
    ))]
pub(crate) async fn list(
    State(app): State<Arc<AppState>>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Reply<CallList>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit must be between 1 and {MAX_LIMIT}")));
    }
    let offset = match (q.offset, q.page) {
        (Some(o), _) if o >= 0 => o,
        (Some(_), _) => return Err(ApiError::bad_request("offset must be ≥ 0")),
        (None, Some(p)) if p >= 1 => {
            (p - 1).checked_mul(limit).ok_or_else(|| ApiError::bad_request(format!("page {p} is past any call")))?
        }
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
    Ok(Reply(CallList { calls, total, limit, offset }))
}

/// By our id, Exotel's CallSid or the stream_sid; with the call's timeline.
#[utoipa::path(get, path = "/api/calls/{id}", operation_id = "get_call", tag = "calls",
    params(("id" = String, Path, description = "Our id, Exotel's CallSid or the stream_sid")),
    responses(
        (status = 200, description = "The call and its timeline", body = CallDetail),
        (status = 404, description = "No such call", body = ErrorBody),
    ))]
pub(crate) async fn show(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Reply<CallDetail>, ApiError> {
    let call = app.store.find_call(&id).await?.ok_or_else(|| ApiError::not_found(format!("no call {id:?}")))?;
    let events = app.store.events(&call.id).await?;
    let recording = super::recording::complete_file(&app, &call).await.map(|_| super::recording::url(&call.id));
    Ok(Reply(CallDetail { call, events, recording }))
}

/// Accepts `2026-11-21` or an RFC 3339 time; answers the UTC RFC 3339 text created_at is stored as.
fn date_bound(name: &str, value: String) -> Result<String, ApiError> {
    use time::format_description::well_known::Rfc3339;
    let bad =
        || ApiError::bad_request(format!("{name} must be a date (YYYY-MM-DD) or an RFC 3339 time, got {value:?}"));
    if let Ok(t) = time::OffsetDateTime::parse(&value, &Rfc3339) {
        // 9999-12-31T23:59:59-01:00 is past the last year `time` holds once in UTC.
        let utc = t.checked_to_offset(time::UtcOffset::UTC).ok_or_else(bad)?;
        return utc.format(&Rfc3339).map_err(|_| bad());
    }
    let date =
        time::Date::parse(&value, time::macros::format_description!("[year]-[month]-[day]")).map_err(|_| bad())?;
    date.midnight().assume_utc().format(&Rfc3339).map_err(|_| bad())
}
