//! JSON error answers: `{"error": "..."}` with a message that names the problem.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    /// Itemized problems (`[{"line", "reason"}]` for a refused file).
    errors: Option<serde_json::Value>,
}

impl ApiError {
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, message: message.into(), errors: None }
    }

    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        Self { status: StatusCode::CONFLICT, message: message.into(), errors: None }
    }

    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), errors: None }
    }

    pub(crate) fn with_errors(mut self, errors: serde_json::Value) -> Self {
        self.errors = Some(errors);
        self
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self { status: StatusCode::NOT_FOUND, message: message.into(), errors: None }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        tracing::error!(error = %format!("{e:#}"), "request failed");
        // The database being down or full is no bug of ours: say so, so clients retry later.
        if let Some(db) = e.chain().find_map(|c| c.downcast_ref::<sqlx::Error>()) {
            if crate::store::unavailable(db) {
                let message = format!("the database is unavailable ({db}); try again later");
                return Self { status: StatusCode::SERVICE_UNAVAILABLE, message, errors: None };
            }
        }
        Self { status: StatusCode::INTERNAL_SERVER_ERROR, message: "internal error".into(), errors: None }
    }
}

/// Every error answer of the API (and of its key check): what went wrong, naming the field or
/// the thing not found.
#[derive(Debug, Serialize, utoipa::ToSchema)]
// Nothing else is ever in it: documented as closed, so a client (or a schema check) can tell it
// from the richer answers some operations give (`DialFailure`).
#[serde(deny_unknown_fields)]
pub(crate) struct ErrorBody {
    pub error: String,
    /// Itemized problems, for a refused campaign file or rule (`line` 0: not a line of the file).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<crate::campaign::import::LineError>>)]
    pub errors: Option<serde_json::Value>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorBody { error: self.message, errors: self.errors })).into_response()
    }
}
