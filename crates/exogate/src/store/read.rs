//! Call-log queries for the API.

use serde::Serialize;
use sqlx::{AnyPool, FromRow};

#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    pub status: Option<String>,
    pub phone: Option<String>,
    pub agent: Option<String>,
    pub direction: Option<String>,
    /// RFC 3339 bounds on created_at: since inclusive, until exclusive.
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

/// A call as the call log keeps it: one row from start to finish.
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct CallRow {
    pub id: String,
    pub call_sid: Option<String>,
    pub stream_sid: Option<String>,
    pub account_sid: Option<String>,
    pub direction: Option<String>,
    pub from_number: Option<String>,
    pub to_number: Option<String>,
    pub custom_field: Option<String>,
    /// The applet's custom parameters.
    #[serde(serialize_with = "as_json")]
    #[schema(value_type = Option<Object>)]
    pub custom_params: Option<String>,
    pub agent: Option<String>,
    pub sample_rate: Option<i64>,
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub duration_ms: Option<i64>,
    pub frames_in: Option<i64>,
    pub bytes_in: Option<i64>,
    pub frames_out: Option<i64>,
    pub bytes_out: Option<i64>,
    pub marks_sent: Option<i64>,
    pub marks_played: Option<i64>,
    pub clears: Option<i64>,
    pub dtmf: Option<String>,
    pub stop_reason: Option<String>,
    pub close_code: Option<i64>,
    pub bad_messages: i64,
    pub seq_gaps: Option<i64>,
    pub call_type: Option<String>,
    pub digits: Option<String>,
    pub flow_id: Option<String>,
    pub recording_url: Option<String>,
    pub passthru_count: i64,
    pub stream_status: Option<String>,
    pub stream_duration: Option<String>,
    pub stream_disconnected_by: Option<String>,
    pub stream_recording_url: Option<String>,
    pub stream_detailed_status: Option<String>,
    pub stream_error: Option<String>,
    pub stream_url: Option<String>,
    pub phone_id: Option<String>,
    pub mode: Option<String>,
    /// The call's legs as Exotel's status callback reported them.
    #[serde(serialize_with = "as_json")]
    #[schema(value_type = Value)]
    pub legs: Option<String>,
    pub conversation_duration: Option<i64>,
    pub error_kind: Option<String>,
    pub error_message: Option<String>,
    pub bot_decision: Option<String>,
    pub exotel_status: Option<String>,
    pub transfer_to: Option<String>,
    pub agent_failure: Option<String>,
    pub agent_fallback: Option<String>,
    pub agent_note: Option<String>,
    pub dropped_in_bytes: Option<i64>,
    pub dropped_out_bytes: Option<i64>,
    /// The gateway that ran the call's media (several may share one database).
    pub instance_id: Option<String>,
    /// The campaign and contact (its position in the list) the call dialed.
    pub campaign_id: Option<String>,
    pub contact_seq: Option<i64>,
    /// Variables of a call we placed (a campaign contact's columns), given to its agent.
    #[serde(serialize_with = "as_json")]
    #[schema(value_type = Option<HashMap<String, String>>)]
    pub vars: Option<String>,
    /// An AI agent's conversation: `[{at_ms, speaker, text}]`.
    #[serde(serialize_with = "as_json")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub transcript: Option<String>,
    /// The provider's usage, summed over the call.
    #[serde(serialize_with = "as_json")]
    #[schema(value_type = Option<Object>)]
    pub usage: Option<String>,
    /// The recording's file name in RECORDINGS_DIR; the API shows its URL instead.
    #[serde(skip)]
    pub recording: Option<String>,
}

/// One entry of a call's timeline.
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct EventRow {
    pub at: String,
    pub kind: String,
    #[serde(serialize_with = "as_json")]
    #[schema(value_type = Value)]
    pub detail: Option<String>,
}

/// Columns stored as JSON text go out as JSON, not as strings holding JSON.
fn as_json<S: serde::Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    let value = v.as_deref().and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok());
    serde::Serialize::serialize(&value, s)
}

pub(super) async fn list(pool: &AnyPool, f: &CallFilter) -> anyhow::Result<(Vec<CallRow>, i64)> {
    // `$N` placeholders for both databases (sqlx's QueryBuilder writes `?` for the Any driver).
    let conditions = [
        ("status", "=", &f.status),
        ("phone_id", "=", &f.phone),
        ("agent", "=", &f.agent),
        ("direction", "=", &f.direction),
        ("created_at", ">=", &f.since),
        ("created_at", "<", &f.until),
    ];
    let mut clause = String::new();
    let mut values = Vec::new();
    for (column, op, value) in conditions {
        if let Some(v) = value {
            values.push(v);
            let sep = if values.len() == 1 { " WHERE " } else { " AND " };
            clause.push_str(&format!("{sep}{column} {op} ${}", values.len()));
        }
    }
    let n = values.len();
    let sql =
        format!("SELECT * FROM calls{clause} ORDER BY created_at DESC, id DESC LIMIT ${} OFFSET ${}", n + 1, n + 2);
    let mut rows = sqlx::query_as::<_, CallRow>(&sql);
    for v in &values {
        rows = rows.bind(*v);
    }
    let rows = rows.bind(f.limit).bind(f.offset).fetch_all(pool).await?;
    let sql = format!("SELECT COUNT(*) FROM calls{clause}");
    let mut total = sqlx::query_scalar::<_, i64>(&sql);
    for v in &values {
        total = total.bind(*v);
    }
    Ok((rows, total.fetch_one(pool).await?))
}

pub(super) async fn find(pool: &AnyPool, any_id: &str) -> anyhow::Result<Option<CallRow>> {
    Ok(sqlx::query_as::<_, CallRow>(
        "SELECT * FROM calls WHERE id = $1 OR call_sid = $1 OR stream_sid = $1 \
         ORDER BY (id = $1) DESC, (call_sid = $1) DESC, created_at DESC LIMIT 1",
    )
    .bind(any_id)
    .fetch_optional(pool)
    .await?)
}

pub(super) async fn events(pool: &AnyPool, call_id: &str) -> anyhow::Result<Vec<EventRow>> {
    Ok(sqlx::query_as::<_, EventRow>("SELECT at, kind, detail FROM call_events WHERE call_id = $1 ORDER BY id")
        .bind(call_id)
        .fetch_all(pool)
        .await?)
}
