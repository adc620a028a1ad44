//! Exotel's applets send call details as a GET query; tools and other paths POST them as a form or
//! JSON. This extractor reads all of them into one [`CallDetails`], body over query.

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request};
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
        let mut details = CallDetails::from_pairs(query);
        if content_type.starts_with("multipart/form-data") {
            let mut form = Multipart::from_request(req, state)
                .await
                .map_err(|e| ApiError::new(e.status(), format!("bad multipart body: {}", e.body_text())))?;
            while let Some(field) = form
                .next_field()
                .await
                .map_err(|e| ApiError::new(e.status(), format!("bad multipart body: {}", e.body_text())))?
            {
                let name = field.name().unwrap_or_default().to_string();
                let text =
                    field.text().await.map_err(|e| ApiError::bad_request(format!("bad multipart field: {e}")))?;
                details.set(&name, &text);
            }
        } else {
            let body = Bytes::from_request(req, state)
                .await
                // Over the route's limit: 413, as for any other body.
                .map_err(|e| ApiError::new(e.status(), format!("cannot read body: {e}")))?;
            read_body(&mut details, &content_type, &body)?;
        }
        // WEBHOOK_SECRET travels as `secret`: checked by the guard, never a call parameter.
        details.extra.retain(|k, _| !k.eq_ignore_ascii_case("secret"));
        Ok(Self { details, method })
    }
}

/// A form or JSON body over the query. Exotel's request format for these URLs is not pinned down
/// (PROTOCOL.md §2.3, §7.2), so a body in any other form is left aside and the query is used: a
/// refusal here would make Exotel skip the bot.
fn read_body(details: &mut CallDetails, content_type: &str, body: &[u8]) -> Result<(), ApiError> {
    let body_text = String::from_utf8_lossy(body);
    let trimmed = body_text.trim();
    if trimmed.is_empty() {
        return Ok(());
    }
    let is_form = content_type.contains("x-www-form-urlencoded");
    if content_type.contains("json") || (!is_form && trimmed.starts_with('{')) {
        let value: serde_json::Value =
            serde_json::from_str(trimmed).map_err(|e| ApiError::bad_request(format!("body is not valid JSON: {e}")))?;
        if !value.is_object() {
            return Err(ApiError::bad_request("JSON body must be an object"));
        }
        merge(details, CallDetails::from_json(&value));
    } else if content_type.is_empty() || is_form || content_type.starts_with("text/") {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(trimmed)
            .map_err(|e| ApiError::bad_request(format!("form body is not URL-encoded: {e}")))?;
        for (k, v) in pairs {
            details.set(&k, &v);
        }
    } else {
        tracing::debug!(content_type = %content_type, "webhook body of an unknown type left aside; using the query");
    }
    Ok(())
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
