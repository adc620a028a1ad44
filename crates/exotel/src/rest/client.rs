//! The HTTP side: one request per call, no silent retries (docs/protocol.md §8).

use std::time::{Duration, SystemTime};

use reqwest::header::{ACCEPT, RETRY_AFTER};
use reqwest::{RequestBuilder, Url, redirect};

use super::error::{parse_retry_after, truncate};
use super::{Account, CallResource, ConnectRequest, RestError};

/// Longest slice of an unusable 2xx body quoted in an [`RestError::Ambiguous`].
const AMBIGUOUS_BODY_LIMIT: usize = 300;

/// An Exotel Voice v1 client. Cheap to clone (the connection pool is shared).
///
/// Every method sends exactly one request: a 429 or 5xx comes back as an error, never as a hidden
/// retry, because a retried `Calls/connect` can dial the customer twice.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    account: Account,
}

impl Client {
    /// How long establishing the connection (DNS, TCP, TLS) may take.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// The default total budget per request. Exotel answers `Calls/connect` only once the first leg is
    /// originated (§8.1), so this is generous.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(45);

    /// Connect timeout 10 s, total 45 s. Fails on an unusable account (empty sid, key or token, bad host).
    pub fn new(account: Account) -> Result<Self, RestError> {
        Self::with_timeout(account, Self::DEFAULT_TIMEOUT)
    }

    /// Like [`Client::new`] with another total timeout (the connect timeout never exceeds it).
    pub fn with_timeout(account: Account, total: Duration) -> Result<Self, RestError> {
        account.validate()?;
        let http = reqwest::Client::builder()
            .connect_timeout(Self::CONNECT_TIMEOUT.min(total))
            .timeout(total)
            .redirect(redirect::Policy::none())
            .user_agent(concat!("exogate-exotel/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RestError::Unreachable {
                message: format!("cannot build the HTTP client: {}", chain(&e.without_url())),
            })?;
        Ok(Self { http, account })
    }

    pub fn account(&self) -> &Account {
        &self.account
    }

    /// Places one outbound call: `POST {api_base}/v1/Accounts/{sid}/Calls/connect.json`.
    /// Validates first; an invalid request is never sent.
    pub async fn connect(&self, req: &ConnectRequest) -> Result<CallResource, RestError> {
        req.validate()?;
        let url = self.endpoint(&["Calls", "connect.json"])?;
        let form = req.form(self.account.sid.trim());
        self.execute(self.http.post(url).form(&form)).await
    }

    /// `GET {api_base}/v1/Accounts/{sid}/Calls/{call_sid}.json`: the fallback when status callbacks
    /// are late or lost (§8.6).
    pub async fn call_details(&self, call_sid: &str) -> Result<CallResource, RestError> {
        let call_sid = call_sid.trim();
        if call_sid.is_empty() {
            return Err(RestError::invalid("CallSid", "is empty"));
        }
        let url = self.endpoint(&["Calls", &format!("{call_sid}.json")])?;
        self.execute(self.http.get(url)).await
    }

    /// `{api_base}/v1/Accounts/{sid}/{tail…}`, each segment path-escaped.
    fn endpoint(&self, tail: &[&str]) -> Result<Url, RestError> {
        let mut url = Url::parse(&self.account.api_base())
            .map_err(|e| RestError::invalid("BaseUrl", format!("not a valid URL ({e})")))?;
        url.path_segments_mut()
            .map_err(|()| RestError::invalid("BaseUrl", "cannot carry a path"))?
            .pop_if_empty()
            .extend(["v1", "Accounts", self.account.sid.trim()])
            .extend(tail);
        Ok(url)
    }

    async fn execute(&self, request: RequestBuilder) -> Result<CallResource, RestError> {
        let request = request
            .basic_auth(&self.account.api_key, Some(&self.account.api_token))
            .header(ACCEPT, "application/json, application/xml;q=0.9, */*;q=0.1");
        self.answer(request).await.map_err(|e| e.scrubbed(&self.account.api_token))
    }

    async fn answer(&self, request: RequestBuilder) -> Result<CallResource, RestError> {
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let code = status.as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let body = match response.bytes().await {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) if status.is_success() => {
                return Err(RestError::Ambiguous {
                    status: Some(code),
                    message: format!("reading the answer failed: {}", chain(&e.without_url())),
                });
            }
            // The status alone says what happened.
            Err(_) => String::new(),
        };
        if !status.is_success() {
            return Err(RestError::from_response(code, retry_after, &body));
        }
        CallResource::parse(&body).ok_or_else(|| {
            let detail = super::error::ErrorBody::parse(&body).message.unwrap_or_else(|| {
                if body.trim().is_empty() {
                    "empty body".to_string()
                } else {
                    truncate(body.trim(), AMBIGUOUS_BODY_LIMIT)
                }
            });
            RestError::Ambiguous { status: Some(code), message: format!("answer without Call.Sid: {detail}") }
        })
    }
}

/// Nothing sent (connect, DNS, TLS, or building the request) → `Unreachable`; anything later, timeouts
/// included → `Ambiguous`.
fn transport_error(e: reqwest::Error) -> RestError {
    let e = e.without_url();
    let message = chain(&e);
    if e.is_connect() || e.is_builder() {
        RestError::Unreachable { message }
    } else if e.is_timeout() {
        RestError::Ambiguous { status: None, message: format!("timed out waiting for Exotel: {message}") }
    } else {
        RestError::Ambiguous { status: None, message }
    }
}

/// `outer: inner: innermost`, skipping repeats.
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}
