//! Console sessions signed out before their cookie expired (see `http::session`): a nonce here is
//! refused by every gateway on the database until its cookie would have expired anyway. Gateways
//! keep the set in memory and reload it (see `AppState::reload_caches`).

use sqlx::AnyPool;

pub(super) async fn add(pool: &AnyPool, nonce: &str, expires_at: i64, now: i64) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO signed_out (nonce, expires_at) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING")
        .bind(nonce)
        .bind(expires_at)
        .execute(pool)
        .await?;
    // Expired cookies are refused without it: the table holds only sessions that could still be
    // used. Tidying only, so it can't fail the sign-out that is already recorded.
    if let Err(e) = sqlx::query("DELETE FROM signed_out WHERE expires_at <= $1").bind(now).execute(pool).await {
        tracing::warn!(error = %e, "cannot delete expired sign-outs");
    }
    Ok(())
}

/// Every sign-out whose cookie has not expired by `now`.
pub(super) async fn list(pool: &AnyPool, now: i64) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as("SELECT nonce, expires_at FROM signed_out WHERE expires_at > $1").bind(now).fetch_all(pool).await
}
