//! `POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}[.json]`: Twilio's call update, for
//! bridged Twilio bots that hang up or transfer through the REST API (see
//! `agent::bridge::twilio_rest`). Answers in Twilio's shapes, so bots read them as they would
//! Twilio's.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::access::basic_auth;
use crate::agent::bridge::{UpdateOutcome, update_call};

pub(crate) async fn update(
    Path((account_sid, call)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let call_sid = call.strip_suffix(".json").unwrap_or(&call).to_string();
    // Wrong tokens are limited per call (see `MAX_WRONG_PER_CALL`), not per address: whoever
    // shares the bot's address can't stop its hang-ups.
    let (user, password) = basic_auth(&headers).unwrap_or_default();
    let mut fields: Vec<(String, String)> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or("")).unwrap_or_default();
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    if json_body {
        if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&body) {
            fields.extend(map.into_iter().filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_string()))));
        }
    } else {
        fields.extend(serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body).unwrap_or_default());
    }
    let field = |name: &str| fields.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
    match update_call(&account_sid, &call_sid, &user, &password, field("Status"), field("Twiml")) {
        UpdateOutcome::Done(status) => Json(json!({
            "sid": call_sid, "account_sid": account_sid, "status": status, "api_version": "2010-04-01",
            "uri": format!("/2010-04-01/Accounts/{account_sid}/Calls/{call_sid}.json"),
        }))
        .into_response(),
        UpdateOutcome::Unauthorized => twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate"),
        UpdateOutcome::TooManyWrong => twilio_error(
            StatusCode::TOO_MANY_REQUESTS,
            20429,
            "Too many requests with wrong credentials for this call: it takes no more",
        ),
        UpdateOutcome::NotFound => twilio_error(
            StatusCode::NOT_FOUND,
            20404,
            &format!("The requested resource /2010-04-01/Accounts/{account_sid}/Calls/{call_sid}.json was not found"),
        ),
        UpdateOutcome::Invalid(message) => twilio_error(StatusCode::BAD_REQUEST, 21220, &message),
    }
}

fn twilio_error(status: StatusCode, code: u32, message: &str) -> Response {
    let body = json!({
        "code": code, "message": message, "status": status.as_u16(),
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
    });
    (status, Json(body)).into_response()
}
