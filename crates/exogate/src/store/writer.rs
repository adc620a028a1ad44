//! The single writer: drains queued operations in batches, one transaction per batch, so a burst
//! of call starts and ends costs one fsync rather than one each.

use sqlx::{Any, AnyPool, Transaction};
use tokio::sync::mpsc;

use super::patch::{CallKey, CallPatch, SqlValue, Status};
use super::{Op, now_text};

const MAX_BATCH: usize = 256;

pub(super) async fn run(pool: AnyPool, mut rx: mpsc::UnboundedReceiver<Op>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut waiters = Vec::new();
        if let Err(e) = apply(&pool, &mut batch, &mut waiters).await {
            tracing::error!(error = %e, "call-log batch failed; retrying one by one");
            // One bad write must not lose its neighbours.
            for op in batch.drain(..) {
                let mut one = vec![op];
                if let Err(e) = apply(&pool, &mut one, &mut waiters).await {
                    tracing::error!(error = %e, "call-log write dropped");
                }
            }
        }
        batch.clear();
        for w in waiters {
            let _ = w.send(());
        }
    }
}

async fn apply(
    pool: &AnyPool,
    batch: &mut Vec<Op>,
    waiters: &mut Vec<tokio::sync::oneshot::Sender<()>>,
) -> sqlx::Result<()> {
    let mut tx = super::db::begin(pool).await?;
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
    for op in batch.drain(..) {
        if let Op::Flush(w) = op {
            waiters.push(w);
        }
    }
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
                sqlx::query(
                    "UPDATE calls SET call_sid = COALESCE(call_sid, $1), stream_sid = COALESCE(stream_sid, $2) WHERE id = $3",
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
    for (column, _) in &patch.fields {
        n += 1;
        let _ = write!(sql, ", {column} = ${n}");
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
