//! The durable call log and control plane: SQLite (WAL) by default, PostgreSQL for several
//! gateways on one database (see [`db`]). Call-log writes go through one background task that
//! batches them into transactions, so the media path only ever does a non-blocking channel send.

mod agents;
mod campaigns;
mod db;
mod patch;
mod phones;
mod read;
mod signed_out;
mod writer;

use std::time::Duration;

use sqlx::AnyPool;
use tokio::sync::{mpsc, oneshot};

pub use agents::{AgentDef, AgentInput};
pub use campaigns::{
    AccountFull, AccountLimits, CONTACT_STATES, CampaignRow, Claimed, ContactRow, HeldContact, NewCampaign,
};
pub use db::Backend;
pub use patch::{CallKey, CallPatch, Status};
pub use phones::{Phone, PhoneInput};
pub use read::{CallFilter, CallRow, EventRow};
pub(crate) use writer::recoverable as unavailable;

pub(crate) enum Op {
    Upsert { key: CallKey, patch: CallPatch },
    Event { key: CallKey, kind: &'static str, detail: serde_json::Value },
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// This process among the gateways on the database (see [`Store::heartbeat`]).
    instance: std::sync::Arc<str>,
    tx: mpsc::Sender<Op>,
    health: std::sync::Arc<WriterHealth>,
}

/// Call-log writes waiting for the database; beyond it new ones are dropped (and counted), so an
/// outage can't grow memory without bound.
pub const WRITE_QUEUE: usize = 50_000;

/// How the call-log writer is doing, for `/health`.
#[derive(Debug, Default)]
pub struct WriterHealth {
    /// Writes dropped: the queue was full, or the database refused one for good.
    pub dropped: std::sync::atomic::AtomicU64,
    /// Why writes are failing now (the database is down, full or read-only); `None` when fine.
    pub failing: std::sync::Mutex<Option<String>>,
}

impl WriterHealth {
    pub fn failing(&self) -> Option<String> {
        self.failing.lock().ok().and_then(|f| f.clone())
    }

    fn drop_one(&self) {
        self.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Store {
    /// Opens (creating a SQLite file if missing) the database, migrates it and starts the writer.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let (pool, backend) = db::open(url).await?;
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let health = std::sync::Arc::new(WriterHealth::default());
        tokio::spawn(writer::run(pool.clone(), rx, health.clone()));
        Ok(Self { pool, backend, instance: crate::ids::instance_id().into(), tx, health })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Says this gateway is alive ([`HEARTBEAT`]); others judge its calls by it.
    pub async fn heartbeat(&self) -> anyhow::Result<()> {
        let now = now_text();
        sqlx::query(
            "INSERT INTO instances (id, started_at, seen_at) VALUES ($1, $2, $2) \
             ON CONFLICT (id) DO UPDATE SET seen_at = $2",
        )
        .bind(&*self.instance)
        .bind(&now)
        .execute(&self.pool)
        .await?;
        let forget = rfc3339_ago(Duration::from_secs(86_400));
        sqlx::query("DELETE FROM instances WHERE seen_at < $1").bind(forget).execute(&self.pool).await?;
        Ok(())
    }

    /// Records that the console session `nonce` (whose cookie expires at `expires_at`, Unix
    /// seconds) signed out: its cookie is refused from now on, here and on every gateway sharing
    /// the database.
    pub async fn sign_out(&self, nonce: &str, expires_at: i64, now: i64) -> anyhow::Result<()> {
        Ok(signed_out::add(&self.pool, nonce, expires_at, now).await?)
    }

    /// Console sessions signed out whose cookies have not expired by `now`: (nonce, expires_at).
    pub async fn signed_out(&self, now: i64) -> anyhow::Result<Vec<(String, i64)>> {
        Ok(signed_out::list(&self.pool, now).await?)
    }

    /// Merges fields into the call's row (created if it doesn't exist). Never blocks.
    pub fn upsert(&self, key: CallKey, patch: CallPatch) {
        if self.tx.try_send(Op::Upsert { key, patch }).is_err() {
            self.health.drop_one();
        }
    }

    /// Writes queued and not yet taken by the writer.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    pub fn writer_health(&self) -> &WriterHealth {
        &self.health
    }

    /// Appends an entry to the call's timeline (creating the row if needed). Never blocks.
    pub fn event(&self, key: CallKey, kind: &'static str, detail: serde_json::Value) {
        if self.tx.try_send(Op::Event { key, kind, detail }).is_err() {
            self.health.drop_one();
        }
    }

    /// Waits until every write queued before this call is committed.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Op::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Calls whose media was running in a gateway that is gone: no session will ever finish them,
    /// so they are marked `interrupted`. With SQLite there is one gateway, so every call but this
    /// one's is orphaned; with PostgreSQL, a call is orphaned when its gateway has not sent a
    /// heartbeat for [`DEAD_AFTER`]. Returns how many.
    pub async fn mark_interrupted(&self) -> anyhow::Result<u64> {
        let now = now_text();
        let alive_since = match self.backend {
            // Nobody else is alive: a heartbeat from the far future would be needed.
            Backend::Sqlite => "9999".to_string(),
            Backend::Postgres => rfc3339_ago(DEAD_AFTER),
        };
        let done = sqlx::query(
            "UPDATE calls SET status = 'interrupted', ended_at = $1, updated_at = $1, \
             stop_reason = COALESCE(stop_reason, 'process-restarted') \
             WHERE status = 'in-progress' AND started_at IS NOT NULL AND ended_at IS NULL \
             AND (instance_id IS NULL OR (instance_id <> $2 AND NOT EXISTS \
                 (SELECT 1 FROM instances i WHERE i.id = calls.instance_id AND i.seen_at > $3)))",
        )
        .bind(&now)
        .bind(&*self.instance)
        .bind(alive_since)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Tells the other gateways on a PostgreSQL database that `channel` changed (payload: who
    /// did it, so the sender can skip its own). Nothing to tell with SQLite.
    pub async fn notify(&self, channel: &str) -> anyhow::Result<()> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT 1 FROM (SELECT pg_notify($1, $2)) AS sent")
                .bind(channel)
                .bind(&*self.instance)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub async fn list_calls(&self, filter: &CallFilter) -> anyhow::Result<(Vec<CallRow>, i64)> {
        read::list(&self.pool, filter).await
    }

    /// By our id, Exotel's CallSid or the stream_sid.
    pub async fn find_call(&self, any_id: &str) -> anyhow::Result<Option<CallRow>> {
        read::find(&self.pool, any_id).await
    }

    pub async fn events(&self, call_id: &str) -> anyhow::Result<Vec<EventRow>> {
        read::events(&self.pool, call_id).await
    }

    /// Creates a call row synchronously (outbound calls need it before Exotel is asked).
    pub async fn create_call(&self, id: &str, patch: CallPatch) -> anyhow::Result<()> {
        self.flush().await;
        writer::create(&self.pool, id, &patch).await?;
        Ok(())
    }

    /// Calls of a phone that have not ended.
    pub async fn live_calls_for_phone(&self, phone_id: &str) -> anyhow::Result<i64> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM calls WHERE phone_id = $1 AND status IN ('queued', 'connecting', 'ringing', 'in-progress')",
        )
        .bind(phone_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }

    /// Records a status-callback delivery; false if it was already applied (Exotel retries).
    pub async fn first_delivery(&self, call_id: &str, event_key: &str) -> anyhow::Result<bool> {
        let done = sqlx::query(
            "INSERT INTO callbacks_seen (call_id, event_key, at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(call_id)
        .bind(event_key)
        .bind(now_text())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Calls we placed that have no final status and have not changed for `quiet`.
    pub async fn stale_outbound(&self, quiet: Duration) -> anyhow::Result<Vec<String>> {
        let cutoff = rfc3339_ago(quiet);
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM calls WHERE direction = 'outbound-api' AND call_sid IS NOT NULL \
             AND status IN ('queued', 'ringing', 'in-progress') AND updated_at < $1 LIMIT 100",
        )
        .bind(cutoff)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    pub async fn phones(&self) -> anyhow::Result<Vec<Phone>> {
        Ok(phones::list(&self.pool).await?)
    }

    pub async fn phone(&self, id_or_number: &str) -> anyhow::Result<Option<Phone>> {
        Ok(phones::get(&self.pool, id_or_number).await?)
    }

    pub async fn phone_token(&self, secrets: &crate::secrets::Secrets, id: &str) -> anyhow::Result<String> {
        phones::token(&self.pool, secrets, id).await
    }

    pub async fn insert_phone(
        &self,
        secrets: &crate::secrets::Secrets,
        p: &PhoneInput,
        id: &str,
    ) -> anyhow::Result<()> {
        phones::insert(&self.pool, secrets, p, id).await
    }

    pub async fn update_phone(
        &self,
        secrets: &crate::secrets::Secrets,
        id: &str,
        p: &PhoneInput,
    ) -> anyhow::Result<bool> {
        phones::update(&self.pool, secrets, id, p).await
    }

    pub async fn delete_phone(&self, id: &str) -> anyhow::Result<bool> {
        Ok(phones::delete(&self.pool, id).await?)
    }

    pub async fn agents(&self) -> anyhow::Result<Vec<AgentDef>> {
        Ok(agents::list(&self.pool).await?)
    }

    pub async fn agent(&self, id: &str) -> anyhow::Result<Option<AgentDef>> {
        Ok(agents::get(&self.pool, id).await?)
    }

    pub async fn upsert_agent(&self, id: &str, a: &AgentInput) -> anyhow::Result<()> {
        Ok(agents::upsert(&self.pool, id, a).await?)
    }

    /// False when an agent has the id already.
    pub async fn insert_agent(&self, id: &str, a: &AgentInput) -> anyhow::Result<bool> {
        Ok(agents::insert(&self.pool, id, a).await?)
    }

    pub async fn delete_agent(&self, id: &str) -> anyhow::Result<bool> {
        Ok(agents::delete(&self.pool, id).await?)
    }

    /// A campaign and all its contacts, in one transaction.
    pub async fn create_campaign(
        &self,
        c: &NewCampaign,
        contacts: &[crate::campaign::import::Contact],
    ) -> anyhow::Result<()> {
        campaigns::create(&self.pool, c, contacts).await
    }

    pub async fn campaigns(&self) -> anyhow::Result<Vec<CampaignRow>> {
        Ok(campaigns::list(&self.pool).await?)
    }

    pub async fn campaign(&self, id: &str) -> anyhow::Result<Option<CampaignRow>> {
        Ok(campaigns::get(&self.pool, id).await?)
    }

    pub async fn campaign_progress(&self, id: &str) -> anyhow::Result<Vec<(String, i64)>> {
        Ok(campaigns::progress(&self.pool, id).await?)
    }

    /// Every running or paused campaign's progress, by campaign id.
    pub async fn unfinished_campaigns_progress(&self) -> anyhow::Result<Vec<(String, Vec<(String, i64)>)>> {
        Ok(campaigns::progress_of_unfinished(&self.pool).await?)
    }

    /// Moves a campaign from one of `from` to `to`; false if it was in none of them.
    pub async fn campaign_transition(
        &self,
        id: &str,
        from: &[&str],
        to: &str,
        reason: Option<&str>,
    ) -> anyhow::Result<bool> {
        Ok(campaigns::transition(&self.pool, id, from, to, reason).await?)
    }

    /// Running campaigns, and others with calls still in the air.
    pub async fn active_campaigns(&self) -> anyhow::Result<Vec<CampaignRow>> {
        Ok(campaigns::active(&self.pool).await?)
    }

    pub async fn held_contacts(&self, campaign: &str) -> anyhow::Result<Vec<HeldContact>> {
        Ok(campaigns::held(&self.pool, campaign).await?)
    }

    /// Moves a held contact on: `refund` takes back an attempt that never reached Exotel.
    pub async fn settle_contact(
        &self,
        campaign: &str,
        seq: i64,
        state: &str,
        next_at: Option<&str>,
        outcome: Option<&str>,
        refund: bool,
    ) -> anyhow::Result<()> {
        Ok(campaigns::settle(&self.pool, campaign, seq, state, next_at, outcome, refund).await?)
    }

    pub async fn contact_call(&self, campaign: &str, seq: i64, call_id: &str) -> anyhow::Result<()> {
        Ok(campaigns::set_call(&self.pool, campaign, seq, call_id).await?)
    }

    /// Claims as many due contacts as the campaign's limits allow now, leased for `lease`.
    pub async fn claim_contacts(
        &self,
        c: &CampaignRow,
        account: AccountLimits,
        lease: Duration,
    ) -> anyhow::Result<Vec<Claimed>> {
        let now = now_text();
        let minute_ago = rfc3339_ago(Duration::from_secs(60));
        let until = rfc3339_after(lease).unwrap_or_else(|| now.clone());
        let postgres = self.backend == Backend::Postgres;
        Ok(campaigns::claim(&self.pool, postgres, c, account, &self.instance, &now, &minute_ago, &until).await?)
    }

    /// Counts a call placed through the API against its account's limits (see [`AccountLimits`]).
    pub async fn reserve_api_dial(
        &self,
        account_sid: &str,
        account: AccountLimits,
    ) -> anyhow::Result<Result<(), campaigns::AccountFull>> {
        let (now, minute_ago) = (now_text(), rfc3339_ago(Duration::from_secs(60)));
        let postgres = self.backend == Backend::Postgres;
        Ok(campaigns::reserve_api_dial(&self.pool, postgres, account_sid, account, &now, &minute_ago).await?)
    }

    pub async fn open_contacts(&self, campaign: &str) -> anyhow::Result<i64> {
        Ok(campaigns::open_contacts(&self.pool, campaign).await?)
    }

    pub async fn recent_outcomes(&self, campaign: &str, since: &str, n: i64) -> anyhow::Result<Vec<String>> {
        Ok(campaigns::recent_outcomes(&self.pool, campaign, since, n).await?)
    }

    pub async fn campaign_contacts(
        &self,
        id: &str,
        state: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> anyhow::Result<Vec<ContactRow>> {
        Ok(campaigns::contacts(&self.pool, id, state, limit, offset).await?)
    }
}

/// How often a gateway says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// A gateway silent for this long is gone, and its running calls are orphans.
pub const DEAD_AFTER: Duration = Duration::from_secs(30);

/// RFC 3339 text `ahead` from now (the times the store compares as text).
pub fn rfc3339_after(ahead: Duration) -> Option<String> {
    let t = time::OffsetDateTime::now_utc() + ahead;
    t.format(&time::format_description::well_known::Rfc3339).ok()
}

/// Whole seconds (at least 1) until a minute has passed since `at` (RFC 3339).
fn secs_until_minute_after(at: &str) -> Option<u64> {
    let t = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).ok()?;
    let left = (t + Duration::from_secs(60)) - time::OffsetDateTime::now_utc();
    Some(left.whole_seconds().clamp(1, 60) as u64)
}

fn rfc3339_ago(ago: Duration) -> String {
    let t = time::OffsetDateTime::now_utc() - ago;
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

pub(crate) fn now_text() -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default()
}
