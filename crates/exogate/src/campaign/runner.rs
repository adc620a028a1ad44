//! The campaign dialer: every tick, for each running campaign, it settles the contacts whose calls
//! ended (from the call log, whatever path ended them), then claims as many due contacts as the
//! limits allow and dials them. All of its state is in the database, so a restarted or second
//! gateway picks up where any other left off.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use exotel::redact::mask_phone;
use exotel::rest::RestError;
use futures_util::StreamExt;

use super::rules::{Retry, Window, WindowSpec};
use crate::app::AppState;
use crate::dialer::{Dial, DialError, Mode};
use crate::store::{AccountLimits, CampaignRow, Claimed, HeldContact};

const TICK: Duration = Duration::from_millis(250);
/// A claimed contact whose dial left no call row by then belongs to a gateway that died mid-dial.
const LEASE: Duration = Duration::from_secs(60);
/// The circuit breaker looks at this many recent outcomes…
const BREAKER_WINDOW: i64 = 20;
/// …and pauses the campaign when more than this share of them failed.
const BREAKER_SHARE: f64 = 0.5;
/// Dials of one tick waiting on Exotel at once.
const DIALS_AT_ONCE: usize = 16;
/// Without a `Retry-After`, a 429 backs the account off for this long.
const DEFAULT_BACKOFF: Duration = Duration::from_secs(30);

pub async fn run(app: Arc<AppState>) {
    let mut backoff: HashMap<String, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let campaigns = match app.store.active_campaigns().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "campaign dialer cannot read campaigns");
                continue;
            }
        };
        for c in campaigns {
            if let Err(e) = step(&app, &c, &mut backoff).await {
                tracing::warn!(campaign = %c.id, error = %format!("{e:#}"), "campaign step failed");
            }
        }
    }
}

async fn step(app: &Arc<AppState>, c: &CampaignRow, backoff: &mut HashMap<String, Instant>) -> anyhow::Result<()> {
    let retry: BTreeMap<String, Retry> = serde_json::from_str(&c.retry)?;
    for held in app.store.held_contacts(&c.id).await? {
        settle(app, c, &retry, held).await?;
    }
    if c.status != "running" {
        // Paused or cancelled: its calls in the air are settled, nobody new is dialed.
        return Ok(());
    }
    if breaker_tripped(app, c).await? {
        return Ok(());
    }
    if app.store.open_contacts(&c.id).await? == 0 {
        if app.store.campaign_transition(&c.id, &["running"], "completed", None).await? {
            tracing::info!(campaign = %c.id, "campaign completed");
        }
        return Ok(());
    }
    let spec: WindowSpec = serde_json::from_str(&c.window_spec)?;
    let window = match Window::parse(&spec) {
        Ok(w) => w,
        Err(reason) => {
            // Fail-closed: a window that no longer reads (a zone gone from the database) stops dialing.
            app.store.campaign_transition(&c.id, &["running"], "paused", Some(&reason)).await?;
            return Ok(());
        }
    };
    if !window.is_open(jiff::Timestamp::now()) {
        return Ok(());
    }
    // A 429 is Exotel's answer for the whole account: every campaign on it backs off.
    let account_key = c.account_sid.clone();
    if backoff.get(&account_key).is_some_and(|until| Instant::now() < *until) {
        return Ok(());
    }
    let mode = match &c.phone_id {
        Some(p) => app.store.phone(p).await?.and_then(|p| p.app_id),
        None => None,
    }
    .or(app.config.exotel.app_id.clone())
    .map_or(Mode::Stream, |_| Mode::Flow);
    let account = AccountLimits {
        max_concurrent: app.config.account_max_concurrent,
        calls_per_minute: app.config.account_calls_per_minute,
    };
    let claimed = app.store.claim_contacts(c, account, LEASE).await?;
    // Several dials in flight at once: each waits on Exotel's answer (and our writes) in turn.
    let mut dials =
        futures_util::stream::iter(claimed).map(|contact| dial(app, c, mode, contact)).buffer_unordered(DIALS_AT_ONCE);
    let mut wait = None;
    while let Some(outcome) = dials.next().await {
        match outcome {
            Ok(Some(w)) => wait = Some(w),
            Ok(None) => {}
            Err(e) => tracing::warn!(campaign = %c.id, error = %format!("{e:#}"), "campaign dial failed"),
        }
    }
    if let Some(wait) = wait {
        // Exotel's Retry-After, bounded where it is parsed; bounded here all the same.
        backoff.insert(account_key, Instant::now() + wait.min(Duration::from_secs(3600)));
        tracing::warn!(campaign = %c.id, secs = wait.as_secs(), "Exotel rate limit: dialing backs off");
    }
    Ok(())
}

/// Dials one claimed contact; `Some(wait)` when Exotel said to slow down (the contact goes back).
async fn dial(app: &Arc<AppState>, c: &CampaignRow, mode: Mode, contact: Claimed) -> anyhow::Result<Option<Duration>> {
    let id = crate::ids::call_id();
    // Recorded before Exotel is asked: a gateway that dies now leaves the call's id on the contact.
    app.store.contact_call(&c.id, contact.seq, &id).await?;
    let d = Dial {
        to: contact.phone.clone(),
        phone: c.phone_id.clone(),
        agent: Some(c.agent.clone()),
        mode,
        id: Some(id),
        campaign: Some((c.id.clone(), contact.seq)),
        vars: serde_json::from_str(&contact.vars).unwrap_or_default(),
        ..Dial::default()
    };
    tracing::info!(campaign = %c.id, contact = contact.seq, to = %mask_phone(&contact.phone), attempt = contact.attempts, "campaign dial");
    match crate::dialer::place(app, d, None).await {
        Ok(_) => Ok(None),
        Err(DialError::Exotel { source: RestError::RateLimited { retry_after, .. }, .. }) => {
            app.store.settle_contact(&c.id, contact.seq, "pending", None, None, true).await?;
            Ok(Some(retry_after.unwrap_or(DEFAULT_BACKOFF)))
        }
        Err(DialError::Exotel { source: RestError::Ambiguous { .. }, .. }) => {
            // The call may exist: the call log's reconciliation settles it, never a blind redial.
            Ok(None)
        }
        Err(DialError::Internal(e)) => {
            // Our own trouble (the database), not the number's: the contact waits for a later tick.
            tracing::warn!(campaign = %c.id, contact = contact.seq, error = %format!("{e:#}"), "campaign dial not placed");
            app.store.settle_contact(&c.id, contact.seq, "pending", None, None, true).await?;
            Ok(None)
        }
        Err(DialError::Busy { .. }) => {
            // The phone's own limit (other traffic on it): try again on a later tick.
            app.store.settle_contact(&c.id, contact.seq, "pending", None, None, true).await?;
            Ok(None)
        }
        Err(e) => {
            // Refused outright (an invalid number, a bad request, not allowed): final.
            let outcome = format!("rejected: {e}");
            app.store.settle_contact(&c.id, contact.seq, "failed", None, Some(&outcome), false).await?;
            Ok(None)
        }
    }
}

/// Moves a held contact on from its call's status.
async fn settle(
    app: &AppState,
    c: &CampaignRow,
    retry: &BTreeMap<String, Retry>,
    h: HeldContact,
) -> anyhow::Result<()> {
    let lease_over = h.lease_until.as_deref().is_some_and(|t| t < crate::store::now_text().as_str());
    let outcome = match h.call_status.as_deref() {
        None if lease_over => {
            // Claimed by a gateway that died before it wrote the call: nothing reached Exotel.
            return app.store.settle_contact(&c.id, h.seq, "pending", None, None, true).await;
        }
        None => return Ok(()),
        Some("queued") if lease_over && h.call_sid.is_none() => {
            // Exotel may or may not have the call, and there is no CallSid to ask about it.
            return app.store.settle_contact(&c.id, h.seq, "failed", None, Some("ambiguous-dial"), false).await;
        }
        Some("queued" | "connecting" | "ringing") => return Ok(()),
        Some("in-progress") => {
            if h.state != "in-progress" {
                app.store.settle_contact(&c.id, h.seq, "in-progress", None, None, false).await?;
            }
            return Ok(());
        }
        Some("completed" | "interrupted") => "completed",
        Some("busy") => "busy",
        Some("no-answer") => "no-answer",
        Some(_) => "failed",
    };
    if outcome == "completed" {
        return app.store.settle_contact(&c.id, h.seq, "completed", None, Some(outcome), false).await;
    }
    match retry.get(outcome) {
        Some(r) if h.attempts < i64::from(r.max_attempts) => {
            let at = crate::store::rfc3339_after(Duration::from_secs(r.after_secs));
            app.store.settle_contact(&c.id, h.seq, "retry-scheduled", at.as_deref(), Some(outcome), false).await
        }
        Some(_) => app.store.settle_contact(&c.id, h.seq, "exhausted", None, Some(outcome), false).await,
        None => app.store.settle_contact(&c.id, h.seq, "failed", None, Some(outcome), false).await,
    }
}

/// Pauses the campaign when most recent dials failed (a wrong caller id, an exhausted balance):
/// better a paused campaign with a reason than a list burnt through.
async fn breaker_tripped(app: &AppState, c: &CampaignRow) -> anyhow::Result<bool> {
    // Only what happened since the campaign was last started or resumed.
    let recent = app.store.recent_outcomes(&c.id, &c.updated_at, BREAKER_WINDOW).await?;
    if (recent.len() as i64) < BREAKER_WINDOW {
        return Ok(false);
    }
    let failed = recent
        .iter()
        .filter(|o| o.as_str() == "failed" || o.starts_with("rejected") || o.starts_with("ambiguous"))
        .count();
    if (failed as f64) <= BREAKER_SHARE * recent.len() as f64 {
        return Ok(false);
    }
    let reason = format!("circuit breaker: {failed} of the last {} dials failed", recent.len());
    if app.store.campaign_transition(&c.id, &["running"], "paused", Some(&reason)).await? {
        tracing::warn!(campaign = %c.id, %reason, "campaign paused");
    }
    Ok(true)
}
