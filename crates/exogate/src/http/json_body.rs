//! JSON in and out. In: a body extractor whose every rejection is a 400 naming the problem
//! (axum's own answers 415/422 with plain text). Out: typed answers, written as the API always
//! wrote them.

use axum::Json;
use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::ApiError;

pub(crate) struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(e) => Err(ApiError::bad_request(e.body_text())),
        }
    }
}

/// A typed answer (its type is its schema in `/api/openapi.json`), sent as JSON with the keys of
/// every object in sorted order: byte for byte what the API sent when its answers were built as
/// `serde_json::Value`s, whose maps sort their keys.
pub(crate) struct Reply<T>(pub T);

impl<T: Serialize> IntoResponse for Reply<T> {
    fn into_response(self) -> Response {
        match serde_json::to_value(&self.0) {
            Ok(v) => Json(v).into_response(),
            Err(e) => ApiError::from(anyhow::Error::from(e)).into_response(),
        }
    }
}
