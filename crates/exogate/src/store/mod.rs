//! The durable call log (SQLite through sqlx, WAL). Writes go through one background task that
//! batches them into transactions, so the media path only ever does a non-blocking channel send.

mod agents;
mod patch;
mod phones;
mod read;
mod writer;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tokio::sync::{mpsc, oneshot};

pub use agents::{AgentDef, AgentInput};
pub use patch::{CallKey, CallPatch, Status};
pub use phones::{Phone, PhoneInput};
pub use read::{CallFilter, CallRow, EventRow};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub(crate) enum Op {
    Upsert { key: CallKey, patch: CallPatch },
    Event { key: CallKey, kind: &'static str, detail: serde_json::Value },
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    tx: mpsc::UnboundedSender<Op>,
}

impl Store {
    /// Opens (creating if missing) the database, migrates it and starts the writer task.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .with_context(|| format!("DATABASE_URL {url:?} is not a valid sqlite URL"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .with_context(|| format!("cannot open database {url:?}"))?;
        MIGRATOR.run(&pool).await.context("database migration failed")?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer::run(pool.clone(), rx));
        Ok(Self { pool, tx })
    }

    /// Merges fields into the call's row (created if it doesn't exist). Never blocks.
    pub fn upsert(&self, key: CallKey, patch: CallPatch) {
        let _ = self.tx.send(Op::Upsert { key, patch });
    }

    /// Appends an entry to the call's timeline (creating the row if needed). Never blocks.
    pub fn event(&self, key: CallKey, kind: &'static str, detail: serde_json::Value) {
        let _ = self.tx.send(Op::Event { key, kind, detail });
    }

    /// Waits until every write queued before this call is committed.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Op::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// Calls whose media was running when a previous process died: no session will ever finish
    /// them, so they are marked `interrupted`. Returns how many.
    pub async fn mark_interrupted(&self) -> anyhow::Result<u64> {
        let now = now_text();
        let done = sqlx::query(
            "UPDATE calls SET status = 'interrupted', ended_at = ?1, updated_at = ?1, \
             stop_reason = COALESCE(stop_reason, 'process-restarted') \
             WHERE status = 'in-progress' AND started_at IS NOT NULL AND ended_at IS NULL",
        )
        .bind(&now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
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
            "SELECT COUNT(*) FROM calls WHERE phone_id = ? AND status IN ('queued', 'connecting', 'ringing', 'in-progress')",
        )
        .bind(phone_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }

    /// Records a status-callback delivery; false if it was already applied (Exotel retries).
    pub async fn first_delivery(&self, call_id: &str, event_key: &str) -> anyhow::Result<bool> {
        let done = sqlx::query("INSERT OR IGNORE INTO callbacks_seen (call_id, event_key, at) VALUES (?, ?, ?)")
            .bind(call_id)
            .bind(event_key)
            .bind(now_text())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Calls we placed that have no final status and have not changed for `quiet`.
    pub async fn stale_outbound(&self, quiet: Duration) -> anyhow::Result<Vec<String>> {
        let cutoff = time::OffsetDateTime::now_utc() - quiet;
        let cutoff = cutoff.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM calls WHERE direction = 'outbound-api' AND call_sid IS NOT NULL \
             AND status IN ('queued', 'ringing', 'in-progress') AND updated_at < ? LIMIT 100",
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

    pub async fn delete_agent(&self, id: &str) -> anyhow::Result<bool> {
        Ok(agents::delete(&self.pool, id).await?)
    }
}

pub(crate) fn now_text() -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default()
}
