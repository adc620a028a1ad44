//! Agent definitions: an id (what `agentId` names), a kind (which implementation), its settings
//! and greeting.

use serde::{Deserialize, Serialize};
use sqlx::{AnyPool, FromRow};

use super::now_text;

/// An agent definition; its settings' secrets are masked.
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct AgentDef {
    pub id: String,
    pub kind: String,
    #[serde(serialize_with = "settings_json")]
    #[schema(value_type = Object)]
    pub settings: String,
    pub greeting: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// Settings go out as JSON, their secrets masked.
fn settings_json<S: serde::Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
    let mut settings = serde_json::from_str::<serde_json::Value>(v).unwrap_or_default();
    crate::agent::sealed::mask(&mut settings);
    serde::Serialize::serialize(&settings, s)
}

/// An agent as written through the API. On update, absent fields keep their value.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentInput {
    /// Required on create: 1-64 letters, digits, `-`, `_` or `.`; what a call's `agentId` names.
    /// Ignored on update.
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,64}$", example = "riya")]
    pub id: Option<String>,
    /// `echo` (the default), `bridge`, `openai-realtime`, `gemini-live`.
    #[schema(example = "echo")]
    pub kind: Option<String>,
    /// The kind's settings, checked when saved; secrets sent back as their mask keep their value.
    #[schema(value_type = Option<Object>)]
    pub settings: Option<serde_json::Value>,
    pub greeting: Option<String>,
}

pub(super) async fn list(pool: &AnyPool) -> sqlx::Result<Vec<AgentDef>> {
    sqlx::query_as("SELECT * FROM agents ORDER BY id").fetch_all(pool).await
}

pub(super) async fn get(pool: &AnyPool, id: &str) -> sqlx::Result<Option<AgentDef>> {
    sqlx::query_as("SELECT * FROM agents WHERE id = $1").bind(id).fetch_optional(pool).await
}

pub(super) async fn upsert(pool: &AnyPool, id: &str, a: &AgentInput) -> sqlx::Result<()> {
    let now = now_text();
    sqlx::query(
        "INSERT INTO agents (id, kind, settings, greeting, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5) \
         ON CONFLICT(id) DO UPDATE SET kind = COALESCE($6, agents.kind), settings = COALESCE($7, agents.settings), \
         greeting = COALESCE($4, agents.greeting), updated_at = $5",
    )
    .bind(id)
    .bind(a.kind.as_deref().unwrap_or("echo"))
    .bind(a.settings.as_ref().map_or_else(|| "{}".to_string(), |s| s.to_string()))
    .bind(&a.greeting)
    .bind(&now)
    .bind(&a.kind)
    .bind(a.settings.as_ref().map(|s| s.to_string()))
    .execute(pool)
    .await?;
    Ok(())
}

/// Creates the agent unless one has the id already (then false): one statement, so of two
/// concurrent creates exactly one wins.
pub(super) async fn insert(pool: &AnyPool, id: &str, a: &AgentInput) -> sqlx::Result<bool> {
    let now = now_text();
    let done = sqlx::query(
        "INSERT INTO agents (id, kind, settings, greeting, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5) \
         ON CONFLICT(id) DO NOTHING",
    )
    .bind(id)
    .bind(a.kind.as_deref().unwrap_or("echo"))
    .bind(a.settings.as_ref().map_or_else(|| "{}".to_string(), |s| s.to_string()))
    .bind(&a.greeting)
    .bind(&now)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn delete(pool: &AnyPool, id: &str) -> sqlx::Result<bool> {
    Ok(sqlx::query("DELETE FROM agents WHERE id = $1").bind(id).execute(pool).await?.rows_affected() > 0)
}
