//! Console sessions signed out before their cookie expired (see `http::session`): a nonce here is
//! refused by every gateway on the database until its cookie would have expired anyway.

use sqlx::AnyPool;

pub(super) async fn add(pool: &AnyPool, nonce: &str, expires_at: i64, now: i64) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO signed_out (nonce, expires_at) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING")
        .bind(nonce)
        .bind(expires_at)
        .execute(pool)
        .await?;
    // Expired cookies are refused without it: the table holds only sessions that could still be used.
    sqlx::query("DELETE FROM signed_out WHERE expires_at <= $1").bind(now).execute(pool).await?;
    Ok(())
}

pub(super) async fn contains(pool: &AnyPool, nonce: &str) -> sqlx::Result<bool> {
    let found: Option<i64> = sqlx::query_scalar("SELECT expires_at FROM signed_out WHERE nonce = $1")
        .bind(nonce)
        .fetch_optional(pool)
        .await?;
    Ok(found.is_some())
}
