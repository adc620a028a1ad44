//! `/api/campaigns`: create from a CSV (JSON with the text, or multipart with the file), list,
//! show with progress, start/pause/resume/cancel, contacts, and the results as CSV.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::error::{ApiError, ErrorBody};
use super::json_body::Reply;
use crate::app::AppState;
use crate::campaign::import::{self, LineError};
use crate::campaign::rules::{Retry, Window, WindowSpec, check_retry};
use crate::store::{CampaignRow, ContactRow, NewCampaign};

/// Largest upload: 100,000 contacts with a few columns are ~5 MB.
pub(crate) const MAX_UPLOAD: usize = 64 << 20;
/// Exotel's own limit per account.
const DEFAULT_CALLS_PER_MINUTE: i64 = 200;
const DEFAULT_MAX_CONCURRENT: i64 = 10;

/// A campaign to create, as JSON with the CSV's text in `csv`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateInput {
    /// Default `campaign`.
    name: Option<String>,
    /// Required: the agent every call gets.
    #[schema(example = "echo")]
    agent: Option<String>,
    /// The phone (id or number) to dial from; the `EXOTEL_*` default phone if absent.
    phone: Option<String>,
    /// Required: the contacts, as CSV text with a header line.
    #[schema(example = "phone,name\n+919800000001,Asha\n+919800000002,Ravi\n")]
    csv: Option<String>,
    /// The column holding the numbers; found by name (`phone`, `number`, `to`, …) if absent.
    phone_column: Option<String>,
    /// Calls of the campaign live at once, 1..1000 (default 10).
    #[schema(minimum = 1, maximum = 1000)]
    max_concurrent: Option<i64>,
    /// Dials per minute, 1..10000 (default 200).
    #[schema(minimum = 1, maximum = 10000)]
    calls_per_minute: Option<i64>,
    /// When calls may be placed (default 09:00-21:00 every day, Asia/Kolkata).
    window: Option<WindowSpec>,
    #[schema(value_type = Option<RetryRules>)]
    retry: Option<BTreeMap<String, Retry>>,
}

/// Retries by outcome; other outcomes are final.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Describes `CreateInput::retry`, checked by `check_retry`.
pub(crate) struct RetryRules {
    busy: Option<Retry>,
    #[schema(rename = "no-answer")]
    no_answer: Option<Retry>,
    failed: Option<Retry>,
}

/// The same fields as `CreateInput`, as form parts: the CSV in `file` (or `csv`), `window` and
/// `retry` as JSON text.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Describes the multipart form `from_multipart` reads.
pub(crate) struct CampaignUpload {
    name: Option<String>,
    #[schema(example = "echo")]
    agent: String,
    phone: Option<String>,
    /// The contacts: a CSV file with a header line, UTF-8.
    #[schema(value_type = String, format = Binary, content_media_type = "text/csv")]
    file: Vec<u8>,
    phone_column: Option<String>,
    max_concurrent: Option<i64>,
    calls_per_minute: Option<i64>,
    /// `WindowSpec` as JSON text.
    window: Option<String>,
    /// The retries as JSON text.
    retry: Option<String>,
}

/// Contacts by state (`in_progress` for `in-progress`, …) and in all.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub(crate) struct Progress {
    pending: i64,
    dialing: i64,
    in_progress: i64,
    completed: i64,
    retry_scheduled: i64,
    failed: i64,
    exhausted: i64,
    /// Never dialed (or not tried again): the campaign was cancelled.
    cancelled: i64,
    total: i64,
}

/// A campaign with its progress.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct CampaignView {
    #[serde(flatten)]
    row: CampaignRow,
    progress: Progress,
    /// Lines of the file skipped (a bad number, a repeat).
    rejected: i64,
}

/// A campaign just created: as shown later, except that `rejected` lists the lines skipped.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct CreatedCampaign {
    #[serde(flatten)]
    row: CampaignRow,
    progress: Progress,
    /// Lines skipped (a bad number, a repeat), the first 1,000.
    rejected: Vec<LineError>,
    /// Every line skipped.
    rejected_total: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct CampaignEnvelope {
    campaign: CampaignView,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct CreatedEnvelope {
    campaign: CreatedCampaign,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct CampaignList {
    /// Newest first.
    campaigns: Vec<CampaignView>,
}

/// Creates a campaign in `draft` from a CSV (JSON with the text, or a multipart upload). A file
/// that can't be read as a whole imports nothing (400 with `errors` by line); bad or repeated
/// numbers in a readable file are skipped and listed in `rejected`.
#[utoipa::path(post, path = "/api/campaigns", operation_id = "create_campaign", tag = "campaigns",
    request_body(content(
        (CreateInput = "application/json"),
        (CampaignUpload = "multipart/form-data"),
    )),
    responses(
        (status = 201, description = "The campaign, in `draft`", body = CreatedEnvelope,
            links(("get_campaign" = (operation_id = "get_campaign", parameters(("id" = "$response.body#/campaign/id")))), ("list_campaign_contacts" = (operation_id = "list_campaign_contacts", parameters(("id" = "$response.body#/campaign/id")))), ("campaign_results" = (operation_id = "campaign_results", parameters(("id" = "$response.body#/campaign/id")))), ("act_on_campaign" = (operation_id = "act_on_campaign", parameters(("id" = "$response.body#/campaign/id")))))),
        (status = 400, description = "A missing or bad field, a refused rule, or a file that can't be read \
            (`errors` by line)", body = ErrorBody),
    ))]
pub(crate) async fn create(State(app): State<Arc<AppState>>, req: Request) -> Result<Response, ApiError> {
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let input = if multipart { from_multipart(req).await? } else { from_json(req).await? };
    let name = input.name.clone().filter(|n| !n.trim().is_empty()).unwrap_or_else(|| "campaign".into());
    let agent = input.agent.clone().ok_or_else(|| ApiError::bad_request("missing field `agent`"))?;
    if !app.agent_exists(&agent) {
        return Err(ApiError::bad_request(format!("agent {agent:?} is not a known agent")));
    }
    // Which Exotel account the campaign dials through: account-wide limits count per account.
    let (phone_id, account_sid) = match &input.phone {
        Some(p) => {
            let phone = app.store.phone(p).await?.ok_or_else(|| ApiError::bad_request(format!("no phone {p:?}")))?;
            (Some(phone.id), phone.account_sid)
        }
        None => (None, app.config.exotel.sid.clone().unwrap_or_else(|| "default".into())),
    };
    let max_concurrent = input.max_concurrent.unwrap_or(DEFAULT_MAX_CONCURRENT);
    let calls_per_minute = input.calls_per_minute.unwrap_or(DEFAULT_CALLS_PER_MINUTE);
    if !(1..=1000).contains(&max_concurrent) {
        return Err(ApiError::bad_request("max_concurrent must be 1..1000"));
    }
    if !(1..=10_000).contains(&calls_per_minute) {
        return Err(ApiError::bad_request("calls_per_minute must be 1..10000"));
    }
    // Fail-closed: a window or zone that can't be read refuses the campaign.
    let window = input.window.clone().unwrap_or_default();
    if let Err(reason) = Window::parse(&window) {
        return Err(rule_refused(reason));
    }
    let retry = input.retry.clone().unwrap_or_default();
    if let Err(reason) = check_retry(&retry) {
        return Err(rule_refused(reason));
    }
    let csv =
        input.csv.as_deref().ok_or_else(|| ApiError::bad_request("missing the CSV: field `csv` or file `file`"))?;
    let imported = match import::parse(csv.as_bytes(), input.phone_column.as_deref()) {
        Ok(i) => i,
        Err(e) => {
            return Err(ApiError::bad_request(e.error).with_errors(json!(e.errors)));
        }
    };
    let new = NewCampaign {
        id: format!("cmp_{}", crate::ids::call_id()),
        name,
        agent,
        phone_id,
        account_sid,
        max_concurrent,
        calls_per_minute,
        window_spec: serde_json::to_string(&window).map_err(anyhow::Error::from)?,
        retry: serde_json::to_string(&retry).map_err(anyhow::Error::from)?,
        phone_column: imported.phone_column.clone(),
        columns: serde_json::to_string(&imported.columns).map_err(anyhow::Error::from)?,
        rejected: imported.rejected_total as i64,
    };
    app.store.create_campaign(&new, &imported.contacts).await?;
    tracing::info!(campaign = %new.id, contacts = imported.contacts.len(), rejected = imported.rejected_total, "campaign created");
    let row = app.store.campaign(&new.id).await?.ok_or_else(|| anyhow::anyhow!("campaign vanished"))?;
    let CampaignView { row, progress, .. } = view(&app, row).await?;
    let campaign =
        CreatedCampaign { row, progress, rejected: imported.rejected, rejected_total: imported.rejected_total };
    Ok((StatusCode::CREATED, Reply(CreatedEnvelope { campaign })).into_response())
}

fn rule_refused(reason: String) -> ApiError {
    ApiError::bad_request(reason.clone()).with_errors(json!([LineError { line: 0, reason }]))
}

async fn from_json(req: Request) -> Result<CreateInput, ApiError> {
    let bytes = axum::body::Bytes::from_request(req, &())
        .await
        .map_err(|e| ApiError::bad_request(format!("cannot read the body: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// The same fields as form parts, the CSV in `file` (or `csv`); `window` and `retry` as JSON text.
async fn from_multipart(req: Request) -> Result<CreateInput, ApiError> {
    let mut form = Multipart::from_request(req, &()).await.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let mut input = CreateInput::default();
    while let Some(field) = form.next_field().await.map_err(|e| ApiError::bad_request(e.body_text()))? {
        let name = field.name().unwrap_or_default().to_string();
        let bytes = field.bytes().await.map_err(|e| ApiError::bad_request(e.body_text()))?;
        if name == "file" || name == "csv" {
            // Checked as a whole (and line by line) by the importer; a lossy decode here would hide
            // Latin-1 bytes, so hand it over as is when it is UTF-8 and refuse it otherwise.
            match String::from_utf8(bytes.to_vec()) {
                Ok(text) => input.csv = Some(text),
                Err(_) => {
                    let e = import::parse(&bytes, None).err().unwrap_or_else(|| import::FileError {
                        error: "the file is not UTF-8 text".into(),
                        errors: Vec::new(),
                    });
                    return Err(ApiError::bad_request(e.error).with_errors(json!(e.errors)));
                }
            }
            continue;
        }
        let text = String::from_utf8_lossy(&bytes).trim().to_string();
        let number = |field: &str| {
            text.parse::<i64>().map_err(|_| ApiError::bad_request(format!("{field} must be a number, got {text:?}")))
        };
        match name.as_str() {
            "name" => input.name = Some(text),
            "agent" => input.agent = Some(text),
            "phone" => input.phone = Some(text).filter(|t| !t.is_empty()),
            "phone_column" => input.phone_column = Some(text).filter(|t| !t.is_empty()),
            "max_concurrent" => input.max_concurrent = Some(number("max_concurrent")?),
            "calls_per_minute" => input.calls_per_minute = Some(number("calls_per_minute")?),
            "window" => {
                input.window =
                    Some(serde_json::from_str(&text).map_err(|e| ApiError::bad_request(format!("window: {e}")))?)
            }
            "retry" => {
                input.retry =
                    Some(serde_json::from_str(&text).map_err(|e| ApiError::bad_request(format!("retry: {e}")))?)
            }
            other => return Err(ApiError::bad_request(format!("unknown form field {other:?}"))),
        }
    }
    Ok(input)
}

async fn view(app: &AppState, row: CampaignRow) -> Result<CampaignView, ApiError> {
    let mut progress = Progress { total: row.contacts, ..Progress::default() };
    // Every one of CONTACT_STATES, zeros included.
    for (state, n) in app.store.campaign_progress(&row.id).await? {
        let count = match state.as_str() {
            "pending" => &mut progress.pending,
            "dialing" => &mut progress.dialing,
            "in-progress" => &mut progress.in_progress,
            "completed" => &mut progress.completed,
            "retry-scheduled" => &mut progress.retry_scheduled,
            "failed" => &mut progress.failed,
            "exhausted" => &mut progress.exhausted,
            "cancelled" => &mut progress.cancelled,
            other => return Err(anyhow::anyhow!("contact state {other:?} has no place in Progress").into()),
        };
        *count = n;
    }
    Ok(CampaignView { rejected: row.rejected, row, progress })
}

#[utoipa::path(get, path = "/api/campaigns", operation_id = "list_campaigns", tag = "campaigns",
    responses((status = 200, description = "Every campaign with its progress", body = CampaignList)))]
pub(crate) async fn list(State(app): State<Arc<AppState>>) -> Result<Reply<CampaignList>, ApiError> {
    let mut campaigns = Vec::new();
    for row in app.store.campaigns().await? {
        campaigns.push(view(&app, row).await?);
    }
    Ok(Reply(CampaignList { campaigns }))
}

#[utoipa::path(get, path = "/api/campaigns/{id}", operation_id = "get_campaign", tag = "campaigns",
    params(("id" = String, Path, description = "The campaign's id")),
    responses(
        (status = 200, description = "The campaign with its progress", body = CampaignEnvelope),
        (status = 404, description = "No such campaign", body = ErrorBody),
    ))]
pub(crate) async fn show(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Reply<CampaignEnvelope>, ApiError> {
    let row = app.store.campaign(&id).await?.ok_or_else(|| ApiError::not_found(format!("no campaign {id:?}")))?;
    Ok(Reply(CampaignEnvelope { campaign: view(&app, row).await? }))
}

/// What can be done to a campaign (the `{action}` of its path).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // Names the path segments `act` matches.
pub(crate) enum CampaignAction {
    /// From `draft`.
    Start,
    /// From `running`.
    Pause,
    /// From `paused`.
    Resume,
    /// From `draft`, `running` or `paused`.
    Cancel,
}

/// `start`, `pause`, `resume`, `cancel`: each allowed from some states only (409 otherwise).
#[utoipa::path(post, path = "/api/campaigns/{id}/{action}", operation_id = "act_on_campaign", tag = "campaigns",
    params(
        ("id" = String, Path, description = "The campaign's id"),
        ("action" = inline(CampaignAction), Path, description = "start, pause, resume or cancel"),
    ),
    responses(
        (status = 200, description = "The campaign in its new state", body = CampaignEnvelope),
        (status = 400, description = "Its calling window can no longer be read (`errors`)", body = ErrorBody),
        (status = 404, description = "No such campaign, or no such action", body = ErrorBody),
        (status = 409, description = "Not allowed from the campaign's state, or it can't start (no public URL for \
            Exotel's status callbacks, its agent is gone)", body = ErrorBody),
    ))]
pub(crate) async fn act(
    State(app): State<Arc<AppState>>,
    Path((id, action)): Path<(String, String)>,
) -> Result<Reply<CampaignEnvelope>, ApiError> {
    let (from, to): (&[&str], &str) = match action.as_str() {
        "start" => (&["draft"], "running"),
        "pause" => (&["running"], "paused"),
        "resume" => (&["paused"], "running"),
        "cancel" => (&["draft", "running", "paused"], "cancelled"),
        other => return Err(ApiError::not_found(format!("no campaign action {other:?}"))),
    };
    let row = app.store.campaign(&id).await?.ok_or_else(|| ApiError::not_found(format!("no campaign {id:?}")))?;
    if to == "running" {
        // Checked again at start: the zone database or the agent may have changed since.
        let spec: WindowSpec = serde_json::from_str(&row.window_spec).map_err(anyhow::Error::from)?;
        if let Err(reason) = Window::parse(&spec) {
            return Err(rule_refused(reason));
        }
        // A slot is released when Exotel's status callback says the call ended: without a public
        // URL for it, every dial would hold its slot until the 15-minute reconciliation.
        if app.config.public_base_url.is_none() {
            return Err(ApiError::conflict(
                "campaigns need WEBHOOK_BASE_URL (or RENDER_EXTERNAL_URL): Exotel's status callbacks end each dial",
            ));
        }
        if !app.agent_exists(&row.agent) {
            return Err(ApiError::conflict(format!("agent {:?} no longer exists", row.agent)));
        }
    }
    let reason = (action == "pause").then_some("paused through the API");
    if !app.store.campaign_transition(&id, from, to, reason).await? {
        return Err(ApiError::conflict(format!("campaign {id:?} is {}; it cannot {action}", row.status)));
    }
    tracing::info!(campaign = %id, action = %action, "campaign {to}");
    let row = app.store.campaign(&id).await?.ok_or_else(|| ApiError::not_found(format!("no campaign {id:?}")))?;
    Ok(Reply(CampaignEnvelope { campaign: view(&app, row).await? }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ContactQuery {
    /// Only contacts in this state: `pending`, `dialing`, `in-progress`, `completed`,
    /// `retry-scheduled`, `failed`, `exhausted`, `cancelled` (`_` for `-` also accepted).
    state: Option<String>,
    /// Contacts per page, 1..1000 (default 100; others are brought into range).
    limit: Option<i64>,
    /// Contacts skipped (default 0).
    offset: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ContactList {
    /// In the file's order.
    contacts: Vec<ContactRow>,
}

#[utoipa::path(get, path = "/api/campaigns/{id}/contacts", operation_id = "list_campaign_contacts", tag = "campaigns",
    params(("id" = String, Path, description = "The campaign's id"), ContactQuery),
    responses(
        (status = 200, description = "A page of the campaign's contacts", body = ContactList),
        (status = 400, description = "A bad query parameter, named", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
    ))]
pub(crate) async fn contacts(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    query: Result<Query<ContactQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Reply<ContactList>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    app.store.campaign(&id).await?.ok_or_else(|| ApiError::not_found(format!("no campaign {id:?}")))?;
    let state = q.state.map(|s| s.replace('_', "-"));
    if let Some(s) = &state {
        if !crate::store::CONTACT_STATES.contains(&s.as_str()) {
            return Err(ApiError::bad_request(format!("state {s:?} is not a contact state")));
        }
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let rows = app.store.campaign_contacts(&id, state.as_deref(), limit, q.offset.unwrap_or(0).max(0)).await?;
    Ok(Reply(ContactList { contacts: rows }))
}

/// One row per contact: its CSV columns, then attempts, final outcome and the last call's id.
#[utoipa::path(get, path = "/api/campaigns/{id}/results.csv", operation_id = "campaign_results", tag = "campaigns",
    params(("id" = String, Path, description = "The campaign's id")),
    responses(
        (status = 200, description = "The results as CSV: the file's columns, then `state`, `attempts`, `outcome`, \
            `last_call_id`", content_type = "text/csv", body = String),
        (status = 404, description = "No such campaign", body = ErrorBody),
    ))]
pub(crate) async fn results(State(app): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let row = app.store.campaign(&id).await?.ok_or_else(|| ApiError::not_found(format!("no campaign {id:?}")))?;
    let columns: Vec<String> = serde_json::from_str(&row.columns).map_err(anyhow::Error::from)?;
    let mut out = csv::Writer::from_writer(Vec::new());
    let mut header = columns.clone();
    header.extend(["state", "attempts", "outcome", "last_call_id"].map(String::from));
    out.write_record(&header).map_err(anyhow::Error::from)?;
    let mut offset = 0;
    loop {
        let page = app.store.campaign_contacts(&id, None, 1000, offset).await?;
        if page.is_empty() {
            break;
        }
        offset += page.len() as i64;
        for c in page {
            let vars: BTreeMap<String, String> = serde_json::from_str(&c.vars).unwrap_or_default();
            let mut record: Vec<String> = columns
                .iter()
                .map(|col| {
                    if *col == row.phone_column { c.phone.clone() } else { vars.get(col).cloned().unwrap_or_default() }
                })
                .collect();
            record.push(c.state);
            record.push(c.attempts.to_string());
            record.push(c.last_outcome.unwrap_or_default());
            record.push(c.last_call_id.unwrap_or_default());
            out.write_record(&record).map_err(anyhow::Error::from)?;
        }
    }
    let bytes = out.into_inner().map_err(|e| anyhow::anyhow!("csv: {e}"))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{id}-results.csv\"")),
        ],
        bytes,
    )
        .into_response())
}
