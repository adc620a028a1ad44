//! Campaigns and their contacts. A campaign is created with all its contacts in one transaction
//! (a bad file imports nothing); status changes are conditional updates, so two gateways (or two
//! clicks) can't both start or both finish one.

use serde::Serialize;
use sqlx::{Any, AnyPool, FromRow, Transaction};

use super::now_text;
use crate::campaign::import::Contact;

/// Contacts per INSERT: 7 values each stays under both databases' parameter limits.
const INSERT_CHUNK: usize = 500;

/// Every state a contact can be in, as stored and as counted in `progress`. `cancelled`: its
/// campaign was cancelled before it was dialed (or before its next attempt).
pub const CONTACT_STATES: [&str; 8] =
    ["pending", "dialing", "in-progress", "completed", "retry-scheduled", "failed", "exhausted", "cancelled"];

#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct CampaignRow {
    pub id: String,
    pub name: String,
    pub agent: String,
    pub phone_id: Option<String>,
    pub account_sid: String,
    pub status: String,
    pub max_concurrent: i64,
    pub calls_per_minute: i64,
    #[serde(rename = "window", serialize_with = "as_json")]
    #[schema(value_type = crate::campaign::rules::WindowSpec)]
    pub window_spec: String,
    /// Retries by outcome (`busy`, `no-answer`, `failed`).
    #[serde(serialize_with = "as_json")]
    #[schema(value_type = BTreeMap<String, crate::campaign::rules::Retry>)]
    pub retry: String,
    pub phone_column: String,
    /// The CSV's columns, in order.
    #[serde(serialize_with = "as_json")]
    #[schema(value_type = Vec<String>)]
    pub columns: String,
    pub contacts: i64,
    /// Lines of the file skipped. Not serialized: the API shows it as a count, except in the
    /// answer to create, where `rejected` lists the lines (and `rejected_total` counts them).
    #[serde(skip_serializing)]
    pub rejected: i64,
    pub status_reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct ContactRow {
    pub seq: i64,
    pub line: i64,
    pub phone: String,
    /// The contact's other columns, by header name.
    #[serde(serialize_with = "as_json")]
    #[schema(value_type = BTreeMap<String, String>)]
    pub vars: String,
    pub state: String,
    pub attempts: i64,
    pub next_at: Option<String>,
    pub last_call_id: Option<String>,
    pub last_outcome: Option<String>,
    pub updated_at: String,
}

fn as_json<S: serde::Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(&serde_json::from_str::<serde_json::Value>(v).unwrap_or_default(), s)
}

/// A campaign as created: the columns of `campaigns` the caller decides.
#[derive(Debug, Clone)]
pub struct NewCampaign {
    pub id: String,
    pub name: String,
    pub agent: String,
    pub phone_id: Option<String>,
    pub account_sid: String,
    pub max_concurrent: i64,
    pub calls_per_minute: i64,
    pub window_spec: String,
    pub retry: String,
    pub phone_column: String,
    pub columns: String,
    pub rejected: i64,
}

pub(super) async fn create(pool: &AnyPool, c: &NewCampaign, contacts: &[Contact]) -> anyhow::Result<()> {
    let now = now_text();
    let mut tx = super::db::begin(pool).await?;
    sqlx::query(
        "INSERT INTO campaigns (id, name, agent, phone_id, status, max_concurrent, calls_per_minute, window_spec, \
         retry, phone_column, columns, contacts, rejected, created_at, updated_at, account_sid) \
         VALUES ($1, $2, $3, $4, 'draft', $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, $14)",
    )
    .bind(&c.id)
    .bind(&c.name)
    .bind(&c.agent)
    .bind(&c.phone_id)
    .bind(c.max_concurrent)
    .bind(c.calls_per_minute)
    .bind(&c.window_spec)
    .bind(&c.retry)
    .bind(&c.phone_column)
    .bind(&c.columns)
    .bind(contacts.len() as i64)
    .bind(c.rejected)
    .bind(&now)
    .bind(&c.account_sid)
    .execute(&mut *tx)
    .await?;
    for (chunk_no, chunk) in contacts.chunks(INSERT_CHUNK).enumerate() {
        let mut sql = String::from(
            "INSERT INTO campaign_contacts (campaign_id, seq, line, phone, vars, state, updated_at) VALUES ",
        );
        for i in 0..chunk.len() {
            let p = i * 5;
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("($1, ${}, ${}, ${}, ${}, 'pending', ${})", p + 2, p + 3, p + 4, p + 5, p + 6));
        }
        let mut q = sqlx::query(&sql).bind(&c.id);
        for (i, contact) in chunk.iter().enumerate() {
            let seq = (chunk_no * INSERT_CHUNK + i) as i64;
            let vars = serde_json::to_string(&contact.vars)?;
            q = q.bind(seq).bind(contact.line as i64).bind(contact.phone.clone()).bind(vars).bind(now.clone());
        }
        q.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn list(pool: &AnyPool) -> sqlx::Result<Vec<CampaignRow>> {
    sqlx::query_as("SELECT * FROM campaigns ORDER BY created_at DESC, id DESC").fetch_all(pool).await
}

pub(super) async fn get(pool: &AnyPool, id: &str) -> sqlx::Result<Option<CampaignRow>> {
    sqlx::query_as("SELECT * FROM campaigns WHERE id = $1").bind(id).fetch_optional(pool).await
}

/// Contacts by state (every state present, zeros included).
pub(super) async fn progress(pool: &AnyPool, id: &str) -> sqlx::Result<Vec<(String, i64)>> {
    let counted: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, COUNT(*) FROM campaign_contacts WHERE campaign_id = $1 GROUP BY state")
            .bind(id)
            .fetch_all(pool)
            .await?;
    Ok(every_state(&counted))
}

fn every_state(counted: &[(String, i64)]) -> Vec<(String, i64)> {
    CONTACT_STATES
        .iter()
        .map(|s| (s.to_string(), counted.iter().find(|(c, _)| c == s).map_or(0, |(_, n)| *n)))
        .collect()
}

/// [`progress`] of every running or paused campaign, in one query (for /metrics), by campaign id.
pub(super) async fn progress_of_unfinished(pool: &AnyPool) -> sqlx::Result<Vec<(String, Vec<(String, i64)>)>> {
    // A campaign without contacts still has its row of zeros (the LEFT JOIN's NULL state).
    let rows: Vec<(String, Option<String>, i64)> = sqlx::query_as(
        "SELECT c.id, cc.state, COUNT(cc.seq) FROM campaigns c \
         LEFT JOIN campaign_contacts cc ON cc.campaign_id = c.id \
         WHERE c.status IN ('running', 'paused') GROUP BY c.id, cc.state ORDER BY c.id",
    )
    .fetch_all(pool)
    .await?;
    let mut out: Vec<(String, Vec<(String, i64)>)> = Vec::new();
    for chunk in rows.chunk_by(|a, b| a.0 == b.0) {
        let counted: Vec<(String, i64)> = chunk.iter().filter_map(|(_, state, n)| Some((state.clone()?, *n))).collect();
        out.push((chunk[0].0.clone(), every_state(&counted)));
    }
    Ok(out)
}

/// Moves the campaign to `to` if it is in one of `from`; false if it was not (or does not exist).
pub(super) async fn transition(
    pool: &AnyPool,
    id: &str,
    from: &[&str],
    to: &str,
    reason: Option<&str>,
) -> sqlx::Result<bool> {
    let now = now_text();
    let mut sql = String::from(
        "UPDATE campaigns SET status = $1, status_reason = $2, updated_at = $3, \
         started_at = CASE WHEN $1 = 'running' THEN COALESCE(started_at, $3) ELSE started_at END, \
         ended_at = CASE WHEN $1 IN ('completed', 'cancelled') THEN $3 ELSE ended_at END \
         WHERE id = $4 AND status IN (",
    );
    for i in 0..from.len() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("${}", i + 5));
    }
    sql.push(')');
    let mut tx = super::db::begin(pool).await?;
    let mut q = sqlx::query(&sql).bind(to).bind(reason).bind(&now).bind(id);
    for f in from {
        q = q.bind(*f);
    }
    if q.execute(&mut *tx).await?.rows_affected() != 1 {
        return Ok(false);
    }
    // Nobody will dial them now: their results say so, rather than waiting for ever. Calls in the
    // air end as they will (see `settle`).
    if to == "cancelled" {
        sqlx::query(
            "UPDATE campaign_contacts SET state = 'cancelled', next_at = NULL, updated_at = $2 \
             WHERE campaign_id = $1 AND state IN ('pending', 'retry-scheduled')",
        )
        .bind(id)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(true)
}

pub(super) async fn contacts(
    pool: &AnyPool,
    id: &str,
    state: Option<&str>,
    limit: i64,
    offset: i64,
) -> sqlx::Result<Vec<ContactRow>> {
    let columns = "seq, line, phone, vars, state, attempts, next_at, last_call_id, last_outcome, updated_at";
    match state {
        Some(s) => {
            sqlx::query_as(&format!(
                "SELECT {columns} FROM campaign_contacts WHERE campaign_id = $1 AND state = $2 \
                 ORDER BY seq LIMIT $3 OFFSET $4"
            ))
            .bind(id)
            .bind(s)
            .bind(limit)
            .bind(offset)
            .fetch_all(pool)
            .await
        }
        None => {
            sqlx::query_as(&format!(
                "SELECT {columns} FROM campaign_contacts WHERE campaign_id = $1 ORDER BY seq LIMIT $2 OFFSET $3"
            ))
            .bind(id)
            .bind(limit)
            .bind(offset)
            .fetch_all(pool)
            .await
        }
    }
}

/// Campaigns the dialer has work in: running ones, and any other (paused, cancelled) whose calls
/// are still in the air and must be settled when they end.
pub(super) async fn active(pool: &AnyPool) -> sqlx::Result<Vec<CampaignRow>> {
    sqlx::query_as(
        "SELECT * FROM campaigns WHERE status = 'running' OR id IN \
         (SELECT DISTINCT campaign_id FROM campaign_contacts WHERE state IN ('dialing', 'in-progress')) \
         ORDER BY created_at",
    )
    .fetch_all(pool)
    .await
}

/// A contact the dialer holds (dialing or in progress) and its call's status, if the call exists.
#[derive(Debug, Clone, FromRow)]
pub struct HeldContact {
    pub seq: i64,
    pub state: String,
    pub attempts: i64,
    pub last_call_id: Option<String>,
    pub lease_until: Option<String>,
    pub call_status: Option<String>,
    pub call_sid: Option<String>,
}

pub(super) async fn held(pool: &AnyPool, campaign: &str) -> sqlx::Result<Vec<HeldContact>> {
    sqlx::query_as(
        "SELECT c.seq, c.state, c.attempts, c.last_call_id, c.lease_until, k.status AS call_status, \
         k.call_sid AS call_sid \
         FROM campaign_contacts c LEFT JOIN calls k ON k.id = c.last_call_id \
         WHERE c.campaign_id = $1 AND c.state IN ('dialing', 'in-progress')",
    )
    .bind(campaign)
    .fetch_all(pool)
    .await
}

/// Sets a held contact's state (and its retry time and outcome); `refund` takes the attempt back
/// (a dial that never reached Exotel).
#[allow(clippy::too_many_arguments)]
pub(super) async fn settle(
    pool: &AnyPool,
    campaign: &str,
    seq: i64,
    state: &str,
    next_at: Option<&str>,
    outcome: Option<&str>,
    refund: bool,
) -> sqlx::Result<()> {
    let mut tx = super::db::begin(pool).await?;
    // A contact that would wait for another try in a cancelled campaign never gets one. The
    // campaign's row is read under a lock (PostgreSQL; SQLite's transaction holds the whole
    // database): a cancel committing in between would otherwise miss this contact, left waiting
    // for a try that never comes.
    let lock = if super::db::is_sqlite(pool) { "" } else { " FOR SHARE" };
    let status: Option<String> = sqlx::query_scalar(&format!("SELECT status FROM campaigns WHERE id = $1{lock}"))
        .bind(campaign)
        .fetch_optional(&mut *tx)
        .await?;
    let cancelled = status.as_deref() == Some("cancelled");
    let state = if cancelled && matches!(state, "pending" | "retry-scheduled") { "cancelled" } else { state };
    sqlx::query(
        "UPDATE campaign_contacts SET state = $3, next_at = $4, last_outcome = COALESCE($5, last_outcome), \
         attempts = attempts - $6, lease_owner = NULL, lease_until = NULL, updated_at = $7 \
         WHERE campaign_id = $1 AND seq = $2",
    )
    .bind(campaign)
    .bind(seq)
    .bind(state)
    .bind(if cancelled { None } else { next_at })
    .bind(outcome)
    .bind(if refund { 1i64 } else { 0 })
    .bind(now_text())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn set_call(pool: &AnyPool, campaign: &str, seq: i64, call_id: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE campaign_contacts SET last_call_id = $3 WHERE campaign_id = $1 AND seq = $2")
        .bind(campaign)
        .bind(seq)
        .bind(call_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// A contact claimed for dialing.
#[derive(Debug, Clone, FromRow)]
pub struct Claimed {
    pub seq: i64,
    pub phone: String,
    pub vars: String,
    pub attempts: i64,
}

/// Limits on one Exotel account, across its campaigns (and gateways).
#[derive(Debug, Clone, Copy)]
pub struct AccountLimits {
    pub max_concurrent: i64,
    pub calls_per_minute: i64,
}

/// What the limits allow now, and the claim itself, in one transaction. On PostgreSQL the
/// account is locked (an advisory lock) and then the campaign's row, so gateways claiming on one
/// account take turns and the campaign's and the account's concurrency and per-minute limits hold
/// across them; `SKIP LOCKED` keeps contacts apart too.
#[allow(clippy::too_many_arguments)]
pub(super) async fn claim(
    pool: &AnyPool,
    postgres: bool,
    c: &CampaignRow,
    account: AccountLimits,
    owner: &str,
    now: &str,
    minute_ago: &str,
    lease_until: &str,
) -> sqlx::Result<Vec<Claimed>> {
    let mut tx = super::db::begin(pool).await?;
    if postgres {
        sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock(hashtext($1))) AS locked")
            .bind(&c.account_sid)
            .execute(&mut *tx)
            .await?;
    }
    let lock = if postgres { " FOR UPDATE" } else { "" };
    let status: Option<String> = sqlx::query_scalar(&format!("SELECT status FROM campaigns WHERE id = $1{lock}"))
        .bind(&c.id)
        .fetch_optional(&mut *tx)
        .await?;
    if status.as_deref() != Some("running") {
        return Ok(Vec::new());
    }
    let live: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM campaign_contacts WHERE campaign_id = $1 AND state IN ('dialing', 'in-progress')",
    )
    .bind(&c.id)
    .fetch_one(&mut *tx)
    .await?;
    let recent: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM campaign_dials WHERE campaign_id = $1 AND at > $2")
        .bind(&c.id)
        .bind(minute_ago)
        .fetch_one(&mut *tx)
        .await?;
    let (account_live, account_recent) = account_usage(&mut tx, &c.account_sid, minute_ago).await?;
    let room = [
        c.max_concurrent - live,
        c.calls_per_minute - recent,
        account.max_concurrent - account_live,
        account.calls_per_minute - account_recent,
    ]
    .into_iter()
    .min()
    .unwrap_or(0);
    if room <= 0 {
        return Ok(Vec::new());
    }
    let skip = if postgres { " FOR UPDATE SKIP LOCKED" } else { "" };
    // The pick is a materialized CTE: as a plain `IN (subquery)`, PostgreSQL may run the locking
    // subquery again for every row it updates, and `LIMIT` then limits nothing.
    let claimed: Vec<Claimed> = sqlx::query_as(&format!(
        "WITH picked AS MATERIALIZED (SELECT seq FROM campaign_contacts WHERE campaign_id = $1 \
         AND state IN ('pending', 'retry-scheduled') AND (next_at IS NULL OR next_at <= $4) \
         ORDER BY seq LIMIT $5{skip}) \
         UPDATE campaign_contacts SET state = 'dialing', attempts = attempts + 1, lease_owner = $2, \
         lease_until = $3, updated_at = $4, last_call_id = NULL, next_at = NULL \
         WHERE campaign_id = $1 AND seq IN (SELECT seq FROM picked) \
         RETURNING seq, phone, vars, attempts"
    ))
    .bind(&c.id)
    .bind(owner)
    .bind(lease_until)
    .bind(now)
    .bind(room)
    .fetch_all(&mut *tx)
    .await?;
    for _ in &claimed {
        sqlx::query("INSERT INTO campaign_dials (campaign_id, account_sid, at) VALUES ($1, $2, $3)")
            .bind(&c.id)
            .bind(&c.account_sid)
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("DELETE FROM campaign_dials WHERE campaign_id = $1 AND at < $2")
        .bind(&c.id)
        .bind(minute_ago)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(claimed)
}

/// An account's calls in the air (campaign contacts being dialed or talking, and calls placed
/// through the API) and its dials in the last minute, campaigns' and API's alike.
async fn account_usage(tx: &mut Transaction<'_, Any>, account_sid: &str, minute_ago: &str) -> sqlx::Result<(i64, i64)> {
    let contacts: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM campaign_contacts k JOIN campaigns c ON c.id = k.campaign_id \
         WHERE c.account_sid = $1 AND k.state IN ('dialing', 'in-progress')",
    )
    .bind(account_sid)
    .fetch_one(&mut **tx)
    .await?;
    let api_calls: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM calls WHERE account_sid = $1 AND campaign_id IS NULL \
         AND direction = 'outbound-api' AND status IN ('queued', 'connecting', 'ringing', 'in-progress')",
    )
    .bind(account_sid)
    .fetch_one(&mut **tx)
    .await?;
    let recent: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM campaign_dials WHERE account_sid = $1 AND at > $2")
        .bind(account_sid)
        .bind(minute_ago)
        .fetch_one(&mut **tx)
        .await?;
    Ok((contacts + api_calls, recent))
}

/// Why the account can't take one more call now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountFull {
    Concurrent(i64),
    /// The per-minute limit, and the seconds until a slot frees.
    PerMinute(i64, u64),
}

/// A call placed through the API counts against its account's limits like a campaign's dial:
/// refused when the account is full, else its dial is recorded (under the account's lock on
/// PostgreSQL, so gateways agree).
pub(super) async fn reserve_api_dial(
    pool: &AnyPool,
    postgres: bool,
    account_sid: &str,
    account: AccountLimits,
    now: &str,
    minute_ago: &str,
) -> sqlx::Result<Result<(), AccountFull>> {
    let mut tx = super::db::begin(pool).await?;
    if postgres {
        sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock(hashtext($1))) AS locked")
            .bind(account_sid)
            .execute(&mut *tx)
            .await?;
    }
    let (live, recent) = account_usage(&mut tx, account_sid, minute_ago).await?;
    if live >= account.max_concurrent {
        return Ok(Err(AccountFull::Concurrent(account.max_concurrent)));
    }
    if recent >= account.calls_per_minute {
        let oldest: Option<String> =
            sqlx::query_scalar("SELECT at FROM campaign_dials WHERE account_sid = $1 AND at > $2 ORDER BY at LIMIT 1")
                .bind(account_sid)
                .bind(minute_ago)
                .fetch_optional(&mut *tx)
                .await?;
        let wait = oldest.and_then(|t| super::secs_until_minute_after(&t)).unwrap_or(60);
        return Ok(Err(AccountFull::PerMinute(account.calls_per_minute, wait)));
    }
    sqlx::query("INSERT INTO campaign_dials (campaign_id, account_sid, at) VALUES ('', $1, $2)")
        .bind(account_sid)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM campaign_dials WHERE campaign_id = '' AND at < $1")
        .bind(minute_ago)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Ok(()))
}

/// Contacts still to be dialed or in the air: zero means the campaign is done.
pub(super) async fn open_contacts(pool: &AnyPool, campaign: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM campaign_contacts WHERE campaign_id = $1 \
         AND state IN ('pending', 'retry-scheduled', 'dialing', 'in-progress')",
    )
    .bind(campaign)
    .fetch_one(pool)
    .await
}

/// The last `n` final outcomes of the campaign's dials, newest first (for the circuit breaker).
pub(super) async fn recent_outcomes(pool: &AnyPool, campaign: &str, since: &str, n: i64) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT last_outcome FROM campaign_contacts WHERE campaign_id = $1 AND last_outcome IS NOT NULL \
         AND state NOT IN ('dialing', 'in-progress') AND updated_at > $2 ORDER BY updated_at DESC LIMIT $3",
    )
    .bind(campaign)
    .bind(since)
    .bind(n)
    .fetch_all(pool)
    .await
}
