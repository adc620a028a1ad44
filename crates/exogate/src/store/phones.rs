//! Phones: ExoPhones with their own Exotel account. Tokens are encrypted before they are stored
//! and never leave through the API.

use serde::{Deserialize, Serialize};
use sqlx::{AnyPool, FromRow};

use super::now_text;
use crate::secrets::Secrets;

/// What the API shows of a phone: everything but the token.
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct Phone {
    pub id: String,
    pub number: String,
    pub account_sid: String,
    pub api_key: String,
    pub subdomain: String,
    pub app_id: Option<String>,
    pub default_agent: Option<String>,
    pub max_concurrent: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
}

/// A phone as written through the API. On update, absent fields keep their value.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PhoneInput {
    /// Made up if absent on create; ignored on update.
    pub id: Option<String>,
    /// The ExoPhone: digits with an optional leading `+` (6-16 digits; spaces, dashes).
    #[schema(pattern = r"^\+?[ -]*([0-9][ -]*){6,16}$", example = "08047491899")]
    pub number: Option<String>,
    /// The Exotel account SID (also accepted as `sid`).
    #[serde(alias = "sid")]
    #[schema(pattern = r"^[A-Za-z0-9._-]+$", example = "yourcompany1")]
    pub account_sid: Option<String>,
    #[schema(min_length = 1, example = "exotel-api-key")]
    pub api_key: Option<String>,
    /// Encrypted at rest, never returned.
    #[schema(min_length = 1, example = "exotel-api-token")]
    pub api_token: Option<String>,
    /// `api.exotel.com` (Singapore, the default) or `api.in.exotel.com` (Mumbai).
    #[schema(pattern = r"^api(\.in)?\.exotel\.com$")]
    pub subdomain: Option<String>,
    /// The flow (app) holding the Voicebot applet, for flow-mode calls.
    pub app_id: Option<String>,
    /// Agent for this phone's calls that name none.
    #[schema(example = "echo")]
    pub default_agent: Option<String>,
    /// Calls of this phone live at once (at least 1).
    #[schema(minimum = 1)]
    pub max_concurrent: Option<i64>,
}

pub(super) async fn list(pool: &AnyPool) -> sqlx::Result<Vec<Phone>> {
    sqlx::query_as("SELECT * FROM phones ORDER BY created_at, id").fetch_all(pool).await
}

/// By id or by number.
pub(super) async fn get(pool: &AnyPool, id_or_number: &str) -> sqlx::Result<Option<Phone>> {
    sqlx::query_as("SELECT * FROM phones WHERE id = $1 OR number = $1 LIMIT 1")
        .bind(id_or_number)
        .fetch_optional(pool)
        .await
}

pub(super) async fn token(pool: &AnyPool, secrets: &Secrets, id: &str) -> anyhow::Result<String> {
    let (blob,): (Vec<u8>,) =
        sqlx::query_as("SELECT api_token_enc FROM phones WHERE id = $1").bind(id).fetch_one(pool).await?;
    secrets.decrypt(&blob)
}

pub(super) async fn insert(pool: &AnyPool, secrets: &Secrets, p: &PhoneInput, id: &str) -> anyhow::Result<()> {
    let now = now_text();
    let token = secrets.encrypt(p.api_token.as_deref().unwrap_or_default())?;
    sqlx::query(
        "INSERT INTO phones (id, number, account_sid, api_key, api_token_enc, subdomain, app_id, default_agent, \
         max_concurrent, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(id)
    .bind(&p.number)
    .bind(&p.account_sid)
    .bind(&p.api_key)
    .bind(token)
    .bind(p.subdomain.as_deref().unwrap_or("api.exotel.com"))
    .bind(&p.app_id)
    .bind(&p.default_agent)
    .bind(p.max_concurrent)
    .bind(&now)
    .bind(&now)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn update(pool: &AnyPool, secrets: &Secrets, id: &str, p: &PhoneInput) -> anyhow::Result<bool> {
    let token = match &p.api_token {
        Some(t) => Some(secrets.encrypt(t)?),
        None => None,
    };
    let done = sqlx::query(
        "UPDATE phones SET number = COALESCE($1, number), account_sid = COALESCE($2, account_sid), \
         api_key = COALESCE($3, api_key), api_token_enc = COALESCE($4, api_token_enc), subdomain = COALESCE($5, subdomain), \
         app_id = COALESCE($6, app_id), default_agent = COALESCE($7, default_agent), \
         max_concurrent = COALESCE($8, max_concurrent), updated_at = $9 WHERE id = $10",
    )
    .bind(&p.number)
    .bind(&p.account_sid)
    .bind(&p.api_key)
    .bind(token)
    .bind(&p.subdomain)
    .bind(&p.app_id)
    .bind(&p.default_agent)
    .bind(p.max_concurrent)
    .bind(now_text())
    .bind(id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn delete(pool: &AnyPool, id: &str) -> sqlx::Result<bool> {
    Ok(sqlx::query("DELETE FROM phones WHERE id = $1").bind(id).execute(pool).await?.rows_affected() > 0)
}
