//! Exotel's applets send call details as a GET query; tools and other paths POST them as a form or
//! JSON. This extractor reads all of them into one [`CallDetails`], body over query.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{Method, header};
use exotel::CallDetails;

use super::error::ApiError;

pub(crate) struct WebhookInput {
    pub details: CallDetails,
    pub method: Method,
}

impl<S: Send + Sync> FromRequest<S> for WebhookInput {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let method = req.method().clone();
        let query: Vec<(String, String)> = serde_urlencoded::from_str(req.uri().query().unwrap_or_default())
            .map_err(|e| ApiError::bad_request(format!("query string is not URL-encoded: {e}")))?;
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let body = Bytes::from_request(req, state)
            .await
            // Over the route's limit: 413, as for any other body.
            .map_err(|e| ApiError::new(e.status(), format!("cannot read body: {e}")))?;
        let mut details = CallDetails::from_pairs(query);
        let body_text = String::from_utf8_lossy(&body);
        let trimmed = body_text.trim();
        if !trimmed.is_empty() {
            let looks_json = content_type.contains("json") || (content_type.is_empty() && trimmed.starts_with('{'));
            if looks_json {
                let value: serde_json::Value = serde_json::from_str(trimmed)
                    .map_err(|e| ApiError::bad_request(format!("body is not valid JSON: {e}")))?;
                if !value.is_object() {
                    return Err(ApiError::bad_request("JSON body must be an object"));
                }
                merge(&mut details, CallDetails::from_json(&value));
            } else if content_type.is_empty()
                || content_type.contains("x-www-form-urlencoded")
                || content_type.starts_with("text/")
            {
                let pairs: Vec<(String, String)> = serde_urlencoded::from_str(trimmed)
                    .map_err(|e| ApiError::bad_request(format!("form body is not URL-encoded: {e}")))?;
                for (k, v) in pairs {
                    details.set(&k, &v);
                }
            } else {
                return Err(ApiError::bad_request(format!(
                    "unsupported Content-Type {content_type:?}: send a query string, a form or JSON"
                )));
            }
        }
        // WEBHOOK_SECRET travels as `secret`: checked by the guard, never a call parameter.
        details.extra.retain(|k, _| !k.eq_ignore_ascii_case("secret"));
        Ok(Self { details, method })
    }
}

/// Fields present in `body` override those from the query.
fn merge(into: &mut CallDetails, body: CallDetails) {
    macro_rules! take {
        ($($f:ident),*) => { $( if body.$f.is_some() { into.$f = body.$f; } )* };
    }
    take!(
        call_sid,
        from,
        to,
        direction,
        call_type,
        call_status,
        created,
        start_time,
        end_time,
        current_time,
        dial_call_duration,
        dial_call_status,
        dial_whom_number,
        digits,
        custom_field,
        recording_url,
        flow_id,
        tenant_id,
        account_sid,
        stream
    );
    into.extra.extend(body.extra);
}
