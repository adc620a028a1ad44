//! Placing outbound calls through Exotel's `Calls/connect`: pick the phone (its own account, or the
//! `EXOTEL_*` default), write the call-log row first, ask Exotel, record what it said.

use exotel::redact::mask_phone;
use exotel::rest::{Account, CallTarget, CallbackContentType, Client, ConnectRequest, RestError, StatusCallbackEvent};
use serde::Serialize;
use serde_json::json;

use crate::app::AppState;
use crate::store::{CallKey, CallPatch, Status};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `Url=` the phone's flow, whose Voicebot applet asks our dynamic-URL endpoint.
    #[default]
    Flow,
    /// Connect Voice AI: `StreamUrl=` straight to our media endpoint, no flow.
    Stream,
}

#[derive(Debug, Clone, Default)]
pub struct Dial {
    pub to: String,
    pub phone: Option<String>,
    pub agent: Option<String>,
    pub custom_field: Option<String>,
    pub mode: Mode,
    pub time_limit: Option<u32>,
    pub time_out: Option<u32>,
    pub record: Option<bool>,
    /// Our id for the call, when the caller must know it before dialing (a campaign records it
    /// on the contact first, so a crash mid-dial leaves a trace).
    pub id: Option<String>,
    /// The campaign and contact this dial is for.
    pub campaign: Option<(String, i64)>,
    /// Variables for the agent (a campaign contact's columns): kept on the call's row, where the
    /// media session finds them at `start`, and sent in `CustomField` when they fit.
    pub vars: std::collections::BTreeMap<String, String>,
}

/// A call handed to Exotel.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Placed {
    pub id: String,
    pub sid: String,
    pub status: String,
    pub phone: Option<String>,
    pub agent: String,
    pub mode: Mode,
}

#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("phone {phone} is at its limit of {max} concurrent calls")]
    Busy { phone: String, max: i64 },
    /// The Exotel account is at its concurrency or per-minute limit (EXOTEL_MAX_CONCURRENT,
    /// EXOTEL_CALLS_PER_MINUTE), campaigns' calls included.
    #[error("{message}")]
    AccountBusy { message: String, retry_after: Option<u64> },
    /// Exotel answered with an error (or may have placed the call: see `RestError::Ambiguous`).
    #[error("exotel: {source}")]
    Exotel { id: String, source: RestError },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Everything needed to call Exotel for one phone.
struct Line {
    phone_id: Option<String>,
    account: Account,
    caller_id: String,
    app_id: Option<String>,
    default_agent: Option<String>,
    max_concurrent: Option<i64>,
}

pub async fn place(app: &AppState, dial: Dial, host: Option<&str>) -> Result<Placed, DialError> {
    let placed = place_once(app, dial, host).await;
    let outcome = match &placed {
        Ok(_) => "accepted",
        Err(DialError::Invalid(_) | DialError::NotFound(_)) => "invalid",
        Err(DialError::Busy { .. }) => "phone-busy",
        Err(DialError::AccountBusy { .. }) => "account-busy",
        Err(DialError::Exotel { source, .. }) => source.kind(),
        Err(DialError::Internal(_)) => "internal-error",
    };
    app.metrics.dialed(outcome);
    placed
}

async fn place_once(app: &AppState, dial: Dial, host: Option<&str>) -> Result<Placed, DialError> {
    if !phone_like(&dial.to) {
        return Err(DialError::Invalid(format!("to {:?} is not a phone number", dial.to)));
    }
    let line = line(app, dial.phone.as_deref()).await?;
    let agent = match dial.agent.as_deref().or(line.default_agent.as_deref()) {
        Some(a) if app.agent_exists(a) => a.to_string(),
        Some(a) => return Err(DialError::Invalid(format!("agent {a:?} is not a known agent"))),
        None => app.config.default_agent.clone(),
    };
    if let (Some(max), Some(phone)) = (line.max_concurrent, &line.phone_id) {
        if app.store.live_calls_for_phone(phone).await? >= max {
            return Err(DialError::Busy { phone: phone.clone(), max });
        }
    }
    // A campaign's dial was counted when its contact was claimed.
    if dial.campaign.is_none() {
        let limits = crate::store::AccountLimits {
            max_concurrent: app.config.account_max_concurrent,
            calls_per_minute: app.config.account_calls_per_minute,
        };
        match app.store.reserve_api_dial(&line.account.sid, limits).await? {
            Ok(()) => {}
            Err(crate::store::AccountFull::Concurrent(max)) => {
                return Err(DialError::AccountBusy {
                    message: format!("the Exotel account is at its limit of {max} concurrent calls"),
                    retry_after: None,
                });
            }
            Err(crate::store::AccountFull::PerMinute(max, wait)) => {
                return Err(DialError::AccountBusy {
                    message: format!("the Exotel account is at its limit of {max} calls per minute"),
                    retry_after: Some(wait),
                });
            }
        }
    }
    let id = dial.id.clone().unwrap_or_else(crate::ids::call_id);
    let custom_field = dial.custom_field.clone().unwrap_or_else(|| custom_field(&id, &dial.vars));
    let target = match dial.mode {
        Mode::Flow => CallTarget::Flow {
            app_id: line.app_id.clone().ok_or_else(|| {
                DialError::Invalid("flow mode needs the phone's app_id (EXOTEL_APP_ID for the default phone)".into())
            })?,
        },
        Mode::Stream => CallTarget::Stream { stream_url: stream_url(app, host, &id, &agent) },
    };
    let mut req = ConnectRequest::new(dial.to.clone(), line.caller_id.clone(), target);
    req.call_type = Some("trans".into());
    req.time_limit = dial.time_limit;
    req.time_out = dial.time_out;
    req.record = dial.record;
    req.custom_field = Some(custom_field.clone());
    if let Some(base) = public_base(app, host) {
        let tok = app.secrets.sign("status", &id);
        req.status_callback = Some(format!("{base}/api/exotel/status?call={id}&tok={tok}"));
        req.status_callback_events = vec![StatusCallbackEvent::Terminal, StatusCallbackEvent::Answered];
        req.status_callback_content_type = Some(CallbackContentType::Json);
    }
    if let Err(e) = req.validate() {
        return Err(DialError::Invalid(e.to_string()));
    }

    app.store
        .create_call(
            &id,
            CallPatch::new()
                .text("direction", Some("outbound-api"))
                .text("from_number", Some(&dial.to))
                .text("to_number", Some(&line.caller_id))
                .text("phone_id", line.phone_id.as_ref())
                .text("account_sid", Some(&line.account.sid))
                .text("agent", Some(&agent))
                .text("mode", Some(if dial.mode == Mode::Flow { "flow" } else { "stream" }))
                .text("custom_field", Some(&custom_field))
                .text("campaign_id", dial.campaign.as_ref().map(|(c, _)| c))
                .int("contact_seq", dial.campaign.as_ref().map(|(_, s)| *s))
                .text("vars", (!dial.vars.is_empty()).then(|| json!(dial.vars).to_string()))
                .status(Status::Queued),
        )
        .await?;
    let key = CallKey { id: Some(id.clone()), ..CallKey::default() };
    tracing::info!(call = %id, to = %mask_phone(&dial.to), phone = line.phone_id.as_deref().unwrap_or("default"), agent = %agent, "placing call");

    let client = Client::new(line.account).map_err(|e| DialError::Internal(anyhow::anyhow!("{e}")))?;
    let asked = std::time::Instant::now();
    let answer = client.connect(&req).await;
    app.metrics.exotel_api("connect", asked.elapsed());
    match answer {
        Ok(call) => {
            let exotel_status = call.status.clone().unwrap_or_default();
            app.store.upsert(
                key.clone(),
                CallPatch::new()
                    .text("call_sid", Some(&call.sid))
                    .text("exotel_status", Some(&exotel_status))
                    .status(Status::Ringing),
            );
            app.store.event(key, "exotel-accepted", json!({ "sid": call.sid, "status": exotel_status }));
            Ok(Placed { id, sid: call.sid, status: "ringing".into(), phone: line.phone_id, agent, mode: dial.mode })
        }
        Err(e) => {
            // Ambiguous: the call may exist; keep it open for reconciliation instead of calling it failed.
            let mut patch =
                CallPatch::new().text("error_kind", Some(e.kind())).text("error_message", Some(e.to_string()));
            if !matches!(e, RestError::Ambiguous { .. }) {
                patch = patch.status(Status::Failed);
            }
            app.store.upsert(key.clone(), patch);
            app.store.event(key, "exotel-error", json!({ "kind": e.kind(), "message": e.to_string() }));
            tracing::warn!(call = %id, kind = e.kind(), error = %e, "exotel refused the call");
            Err(DialError::Exotel { id, source: e })
        }
    }
}

async fn line(app: &AppState, phone: Option<&str>) -> Result<Line, DialError> {
    let env = &app.config.exotel;
    let from_phone = |p: crate::store::Phone, token: String| Line {
        account: account(&p.account_sid, &p.api_key, token, Some(p.subdomain.clone()), env.api_url.clone()),
        caller_id: p.number.clone(),
        app_id: p.app_id.clone().or_else(|| env.app_id.clone()),
        default_agent: p.default_agent.clone(),
        max_concurrent: p.max_concurrent,
        phone_id: Some(p.id),
    };
    if let Some(reference) = phone {
        let p =
            app.store.phone(reference).await?.ok_or_else(|| DialError::NotFound(format!("no phone {reference:?}")))?;
        let token = app.store.phone_token(&app.secrets, &p.id).await?;
        return Ok(from_phone(p, token));
    }
    if let (Some(key), Some(token), Some(sid), Some(caller)) = (&env.api_key, &env.api_token, &env.sid, &env.caller_id)
    {
        return Ok(Line {
            account: account(sid, key, token.0.clone(), env.subdomain.clone(), env.api_url.clone()),
            caller_id: caller.clone(),
            app_id: env.app_id.clone(),
            default_agent: None,
            max_concurrent: None,
            phone_id: None,
        });
    }
    let mut phones = app.store.phones().await?;
    match phones.len() {
        1 => {
            let p = phones.remove(0);
            let token = app.store.phone_token(&app.secrets, &p.id).await?;
            Ok(from_phone(p, token))
        }
        0 => Err(DialError::Invalid(
            "no phone to call from: set EXOTEL_SID, EXOTEL_API_KEY, EXOTEL_API_TOKEN and EXOTEL_CALLER_ID, or add one at /api/phones".into(),
        )),
        _ => Err(DialError::Invalid("several phones are configured: say which one with `phone`".into())),
    }
}

fn account(sid: &str, key: &str, token: String, subdomain: Option<String>, base_url: Option<String>) -> Account {
    let mut a = Account::new(sid, key, token);
    if let Some(s) = subdomain {
        a.subdomain = s;
    }
    a.base_url = base_url;
    a
}

/// Our public http(s) base: WEBHOOK_BASE_URL / RENDER_EXTERNAL_URL, else the Host the API was called on.
fn public_base(app: &AppState, host: Option<&str>) -> Option<String> {
    app.config.public_base_url.clone().or_else(|| host.map(|h| format!("http://{h}")))
}

/// The call's own media URL: its agent and our id (the session finds the call's variables by it).
fn stream_url(app: &AppState, host: Option<&str>, id: &str, agent: &str) -> String {
    let base = app.media_url(host);
    let mut query = serde_urlencoded::to_string([("agentId", agent), ("callLogId", id)]).unwrap_or_default();
    if app.config.access.media_require_token {
        let call = crate::access::TokenCall::Ours(id.to_string());
        let token = crate::access::media_token(&app.secrets, &call, crate::access::MEDIA_TOKEN_TTL);
        query.push_str(&format!("&t={token}"));
    }
    format!("{base}?{query}")
}

/// The `CustomField` of a call we place: our id, so Exotel's callbacks and applets lead back to
/// the call, and with it the call's variables as JSON when they fit Exotel's 128 characters
/// (`{"call_id":"…","name":"Asha"}`), so a flow's Passthru or the user's own server sees them too.
pub fn custom_field(id: &str, vars: &std::collections::BTreeMap<String, String>) -> String {
    if vars.is_empty() {
        return id.to_string();
    }
    let mut all = serde_json::Map::new();
    all.insert("call_id".into(), id.into());
    for (k, v) in vars.iter().filter(|(k, _)| k.as_str() != "call_id") {
        all.insert(k.clone(), v.as_str().into());
    }
    let json = serde_json::Value::Object(all).to_string();
    if json.chars().count() <= exotel::rest::MAX_CUSTOM_FIELD { json } else { id.to_string() }
}

/// Our call id inside a `CustomField` we sent ([`custom_field`]); a plain value is itself.
pub fn custom_field_ref(custom_field: &str) -> std::borrow::Cow<'_, str> {
    if custom_field.starts_with('{') {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(custom_field) {
            if let Some(id) = v.get("call_id").and_then(serde_json::Value::as_str) {
                return id.to_string().into();
            }
        }
    }
    custom_field.into()
}

/// Digits with an optional leading `+`, spaces and dashes tolerated; 6–16 digits.
pub fn phone_like(n: &str) -> bool {
    let t = n.trim();
    let body = t.strip_prefix('+').unwrap_or(t);
    let digits = body.chars().filter(char::is_ascii_digit).count();
    body.chars().all(|c| c.is_ascii_digit() || c == ' ' || c == '-') && (6..=16).contains(&digits)
}

/// Asks Exotel for the call's state (`GET Calls/{sid}`) and records it: for calls whose status
/// callback never came.
pub async fn reconcile(app: &AppState, id: &str) -> Result<crate::store::CallRow, DialError> {
    let row = app.store.find_call(id).await?.ok_or_else(|| DialError::NotFound(format!("no call {id:?}")))?;
    let sid =
        row.call_sid.clone().ok_or_else(|| DialError::Invalid(format!("call {id:?} has no Exotel CallSid yet")))?;
    let line = line(app, row.phone_id.as_deref()).await?;
    let client = Client::new(line.account).map_err(|e| DialError::Internal(anyhow::anyhow!("{e}")))?;
    let asked = std::time::Instant::now();
    let answer = client.call_details(&sid).await;
    app.metrics.exotel_api("call_details", asked.elapsed());
    let call = answer.map_err(|source| DialError::Exotel { id: row.id.clone(), source })?;
    let key = CallKey { id: Some(row.id.clone()), ..CallKey::default() };
    let mut patch = CallPatch::new()
        .text("exotel_status", call.status.as_ref())
        .int("conversation_duration", call.duration.map(|d| d as i64))
        .text("recording_url", call.recording_url.as_ref());
    if let Some(s) = call.status.as_deref().and_then(Status::from_exotel) {
        patch = patch.status(s);
    }
    app.store.upsert(key.clone(), patch);
    app.store.event(key, "reconciled", json!({ "status": call.status, "duration": call.duration }));
    app.store.flush().await;
    app.store.find_call(&row.id).await?.ok_or_else(|| DialError::NotFound(format!("no call {id:?}")))
}

/// Reconciles placed calls that have gone quiet without a final status: at start every call in
/// flight (its status callback may have come while no gateway was up), then every few minutes
/// those quiet for 15 minutes.
pub async fn reconcile_loop(app: std::sync::Arc<AppState>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(120));
    let mut quiet = std::time::Duration::ZERO;
    loop {
        tick.tick().await;
        let found = app.store.stale_outbound(quiet).await;
        quiet = std::time::Duration::from_secs(15 * 60);
        let stale = match found {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list calls to reconcile");
                continue;
            }
        };
        for id in stale {
            if let Err(e) = reconcile(&app, &id).await {
                tracing::debug!(call = %id, error = %e, "reconcile failed");
            }
            // Exotel's 200 requests a minute cover these lookups too (PROTOCOL.md §8.5): after a
            // restart with many calls in flight, a burst of them would leave new dials a 429.
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn custom_field_carries_the_vars_that_fit() {
        let id = "0193a5b2c3d4e5f60718293a4b5c6d7e";
        assert_eq!(custom_field(id, &BTreeMap::new()), id);
        let vars = BTreeMap::from([("name".to_string(), "Asha".to_string()), ("call_id".into(), "spoof".into())]);
        let cf = custom_field(id, &vars);
        assert_eq!(cf, format!(r#"{{"call_id":"{id}","name":"Asha"}}"#));
        assert_eq!(custom_field_ref(&cf), id);
        let long = BTreeMap::from([("note".to_string(), "x".repeat(100))]);
        assert_eq!(custom_field(id, &long), id, "too long for Exotel: the id alone");
        assert_eq!(custom_field_ref("order-7"), "order-7");
        assert_eq!(custom_field_ref("{not json"), "{not json");
    }
}
