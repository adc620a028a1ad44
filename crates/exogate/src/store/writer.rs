//! The single writer: drains queued operations in batches, one transaction per batch, so a burst
//! of call starts and ends costs one fsync rather than one each.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{Any, AnyPool, Transaction};
use tokio::sync::mpsc;

use super::patch::{CallKey, CallPatch, SqlValue, Status};
use super::{Op, WriterHealth, now_text};

const MAX_BATCH: usize = 256;
/// How long a small batch waits for company before it is written.
const COALESCE: Duration = Duration::from_millis(20);
/// What Exotel still tells about a call after it has ended (its status callback, call details).
const AFTER_THE_END: &[&str] = &["exotel_status", "conversation_duration", "legs", "error_kind", "error_message"];

/// After a failed write that the database may recover from, the first pause before trying
/// again; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub(super) async fn run(pool: AnyPool, mut rx: mpsc::Receiver<Op>, health: Arc<WriterHealth>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // One connection for every batch: SQLite's page cache stays warm (a pooled connection
    // another one wrote behind has to read its pages again).
    let mut held = None;
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // Writes trickling in (a transcript line here, a call's end there) share a transaction
        // rather than paying one each; someone waiting on a flush is not kept waiting.
        if batch.len() < MAX_BATCH && !batch.iter().any(|op| matches!(op, Op::Flush(_))) {
            tokio::time::sleep(COALESCE).await;
            while batch.len() < MAX_BATCH {
                let Ok(op) = rx.try_recv() else { break };
                batch.push(op);
            }
        }
        let mut waiters = Vec::new();
        let mut backoff = FIRST_BACKOFF;
        loop {
            let Err(e) = apply(&pool, &mut held, &mut batch, &mut waiters).await else { break };
            if recoverable(&e) {
                // The database is down, full or read-only: keep the batch (new writes wait in
                // the bounded queue behind it) and try again until it is back.
                set_failing(&health, Some(e.to_string()));
                tracing::error!(error = %e, retry_in_ms = backoff.as_millis() as u64, "call-log writes failing; holding them");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
            tracing::error!(error = %e, "call-log batch failed; retrying one by one");
            // One bad write must not lose its neighbours.
            for op in batch.drain(..) {
                let mut one = vec![op];
                if let Err(e) = apply(&pool, &mut held, &mut one, &mut waiters).await {
                    health.drop_one();
                    tracing::error!(error = %e, "call-log write dropped");
                }
                take_waiters(&mut one, &mut waiters);
            }
            break;
        }
        if health.failing().is_some() {
            set_failing(&health, None);
            tracing::info!("call-log writes succeed again");
        }
        batch.clear();
        for w in waiters {
            let _ = w.send(());
        }
    }
}

fn set_failing(health: &WriterHealth, why: Option<String>) {
    if let Ok(mut f) = health.failing.lock() {
        *f = why;
    }
}

/// Errors that say the database can't take writes now (not that this write is wrong).
pub(crate) fn recoverable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => true,
        // Our `BEGIN IMMEDIATE` did not open a transaction: SQLite could not take the write lock
        // (an immutable or vanished file under it).
        sqlx::Error::InvalidSavePointStatement => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // SQLite: BUSY, READONLY, IOERR, FULL, CANTOPEN (extended codes keep the primary in the low byte).
            let sqlite = code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 8 | 10 | 13 | 14));
            // PostgreSQL: connection exceptions, insufficient resources, operator intervention,
            // and a database not accepting connections (maintenance).
            let postgres = ["08", "53", "57", "55000"].iter().any(|class| code.starts_with(class));
            sqlite || postgres
        }
        _ => false,
    }
}

fn take_waiters(ops: &mut Vec<Op>, waiters: &mut Vec<tokio::sync::oneshot::Sender<()>>) {
    for op in ops.drain(..) {
        if let Op::Flush(w) = op {
            waiters.push(w);
        }
    }
}

async fn apply(
    pool: &AnyPool,
    held: &mut Option<sqlx::pool::PoolConnection<Any>>,
    batch: &mut Vec<Op>,
    waiters: &mut Vec<tokio::sync::oneshot::Sender<()>>,
) -> sqlx::Result<()> {
    let conn = match held {
        Some(conn) => conn,
        None => held.insert(pool.acquire().await?),
    };
    let sqlite = super::db::is_sqlite(pool);
    let result = apply_on(conn, sqlite, batch, waiters).await;
    if let Err(e) = &result {
        if let Some(mut conn) = held.take() {
            // A connection that failed under a broken database keeps failing once it is back
            // (SQLite remembers a file it found read-only; a failed COMMIT can leave it inside
            // its transaction): closed, not reused. Checked here, on the error, because a
            // connection's release can't tell the first case. After any other error it goes
            // back to the pool, whose release hook checks it.
            if recoverable(e) {
                conn.close_on_drop();
            }
        }
    }
    result
}

async fn apply_on(
    conn: &mut sqlx::pool::PoolConnection<Any>,
    sqlite: bool,
    batch: &mut Vec<Op>,
    waiters: &mut Vec<tokio::sync::oneshot::Sender<()>>,
) -> sqlx::Result<()> {
    let mut tx = super::db::begin_on(conn, sqlite).await?;
    for op in batch.iter_mut() {
        match op {
            Op::Upsert { key, patch } => upsert(&mut tx, key, patch).await?,
            Op::Event { key, kind, detail } => {
                let (id, _) = resolve(&mut tx, key).await?;
                sqlx::query("INSERT INTO call_events (call_id, at, kind, detail) VALUES ($1, $2, $3, $4)")
                    .bind(&id)
                    .bind(now_text())
                    .bind(*kind)
                    .bind(detail.to_string())
                    .execute(&mut *tx)
                    .await?;
            }
            Op::Flush(_) => {}
        }
    }
    tx.commit().await?;
    take_waiters(batch, waiters);
    Ok(())
}

/// Finds the call's row or creates it; returns (id, status).
async fn resolve(tx: &mut Transaction<'_, Any>, key: &CallKey) -> sqlx::Result<(String, String)> {
    let placed_id = key.custom_field.as_deref().map(|c| crate::dialer::custom_field_ref(c).into_owned());
    let lookups = [
        ("SELECT id, status FROM calls WHERE call_sid = $1", &key.call_sid),
        ("SELECT id, status FROM calls WHERE stream_sid = $1 ORDER BY created_at DESC LIMIT 1", &key.stream_sid),
        ("SELECT id, status FROM calls WHERE id = $1", &key.id),
        // Calls we placed carry our id (or the user's CustomField) back through Exotel.
        ("SELECT id, status FROM calls WHERE id = $1", &placed_id),
        (
            "SELECT id, status FROM calls WHERE custom_field = $1 AND direction = 'outbound-api' ORDER BY created_at DESC LIMIT 1",
            &key.custom_field,
        ),
    ];
    for (sql, value) in lookups {
        if let Some(v) = value {
            if let Some(row) = sqlx::query_as::<_, (String, String)>(sql).bind(v).fetch_optional(&mut **tx).await? {
                // Learn ids the row didn't have yet (e.g. the CallSid arriving after the stream).
                // Only when there is something to learn: an UPDATE that changes nothing still
                // writes the row's page.
                sqlx::query(
                    "UPDATE calls SET call_sid = COALESCE(call_sid, $1), stream_sid = COALESCE(stream_sid, $2) \
                     WHERE id = $3 AND ((call_sid IS NULL AND $1 IS NOT NULL) OR (stream_sid IS NULL AND $2 IS NOT NULL))",
                )
                .bind(&key.call_sid)
                .bind(&key.stream_sid)
                .bind(&row.0)
                .execute(&mut **tx)
                .await?;
                return Ok(row);
            }
        }
    }
    let id = key.id.clone().unwrap_or_else(crate::ids::call_id);
    let now = now_text();
    sqlx::query(
        "INSERT INTO calls (id, call_sid, stream_sid, status, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&id)
    .bind(&key.call_sid)
    .bind(&key.stream_sid)
    .bind(Status::Connecting.as_str())
    .bind(&now)
    .bind(&now)
    .execute(&mut **tx)
    .await?;
    Ok((id, Status::Connecting.as_str().to_string()))
}

/// Inserts a new row with `patch` applied, in its own transaction.
pub(super) async fn create(pool: &AnyPool, id: &str, patch: &CallPatch) -> sqlx::Result<()> {
    let mut tx = super::db::begin(pool).await?;
    let key = CallKey { id: Some(id.to_string()), ..CallKey::default() };
    upsert(&mut tx, &key, patch).await?;
    tx.commit().await
}

async fn upsert(tx: &mut Transaction<'_, Any>, key: &CallKey, patch: &CallPatch) -> sqlx::Result<()> {
    let (id, current) = resolve(tx, key).await?;
    use std::fmt::Write as _;
    let mut sql = String::from("UPDATE calls SET updated_at = $1");
    let mut n = 1;
    // A finished call's facts stand: later input (a replayed Passthru, another stream naming its
    // CallSid) may fill what is missing, not rewrite what was recorded.
    let finished = Status::is_final(&current);
    for (column, _) in &patch.fields {
        n += 1;
        if finished && !AFTER_THE_END.contains(column) {
            let _ = write!(sql, ", {column} = COALESCE({column}, ${n})");
        } else {
            let _ = write!(sql, ", {column} = ${n}");
        }
    }
    let status = patch.status.filter(|s| Status::rank(s.as_str()) >= Status::rank(&current));
    if status.is_some() {
        n += 1;
        let _ = write!(sql, ", status = ${n}");
    }
    if patch.passthru_hit {
        sql.push_str(", passthru_count = passthru_count + 1");
    }
    let _ = write!(sql, " WHERE id = ${}", n + 1);
    let mut q = sqlx::query(&sql).bind(now_text());
    for (_, value) in &patch.fields {
        q = match value {
            SqlValue::Text(t) => q.bind(t),
            SqlValue::Int(i) => q.bind(i),
        };
    }
    if let Some(s) = status {
        q = q.bind(s.as_str());
    }
    q.bind(&id).execute(&mut **tx).await?;
    Ok(())
}
