//! Account credentials and the API host (docs/protocol.md §8.1).

use std::fmt;

use reqwest::Url;

use super::RestError;
use crate::redact::redact_url;

/// An Exotel account. `Debug` shows the token as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    pub sid: String,
    pub api_key: String,
    pub api_token: String,
    /// `api.exotel.com` (Singapore, the default) or `api.in.exotel.com` (Mumbai, India accounts).
    pub subdomain: String,
    /// Full override of the API root, e.g. `http://127.0.0.1:4010` (`EXOTEL_API_URL`); requests then go
    /// to `{base_url}/v1/Accounts/{sid}/…` and `subdomain` is ignored.
    pub base_url: Option<String>,
}

impl Account {
    /// The default (Singapore) cluster.
    pub const DEFAULT_SUBDOMAIN: &str = "api.exotel.com";
    /// The Mumbai cluster, for India accounts.
    pub const INDIA_SUBDOMAIN: &str = "api.in.exotel.com";

    /// An account on [`Account::DEFAULT_SUBDOMAIN`] with no base URL override.
    pub fn new(sid: impl Into<String>, api_key: impl Into<String>, api_token: impl Into<String>) -> Self {
        Self {
            sid: sid.into(),
            api_key: api_key.into(),
            api_token: api_token.into(),
            subdomain: Self::DEFAULT_SUBDOMAIN.to_string(),
            base_url: None,
        }
    }

    /// `https://{subdomain}`, or `base_url` when set; never a trailing slash.
    pub fn api_base(&self) -> String {
        if let Some(base) = self.base_url.as_deref().map(str::trim).filter(|b| !b.is_empty()) {
            return base.trim_end_matches('/').to_string();
        }
        let sub = self.subdomain.trim().trim_end_matches('/');
        let sub = if sub.is_empty() { Self::DEFAULT_SUBDOMAIN } else { sub };
        format!("https://{sub}")
    }

    /// What [`super::Client::new`] needs before it can send anything.
    pub(crate) fn validate(&self) -> Result<(), RestError> {
        let sid = self.sid.trim();
        if sid.is_empty() {
            return Err(RestError::invalid("AccountSid", "is empty"));
        }
        if !sid.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
            return Err(RestError::invalid("AccountSid", "may only hold letters, digits, '-', '_', '.'"));
        }
        if self.api_key.trim().is_empty() {
            return Err(RestError::invalid("ApiKey", "is empty"));
        }
        if self.api_token.is_empty() {
            return Err(RestError::invalid("ApiToken", "is empty"));
        }
        let field =
            if self.base_url.as_deref().is_some_and(|b| !b.trim().is_empty()) { "BaseUrl" } else { "Subdomain" };
        let url =
            Url::parse(&self.api_base()).map_err(|e| RestError::invalid(field, format!("not a valid URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
            return Err(RestError::invalid(field, "must be an http(s) URL with a host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(RestError::invalid(field, "must not carry credentials; use api_key and api_token"));
        }
        Ok(())
    }
}

impl Default for Account {
    fn default() -> Self {
        Self::new("", "", "")
    }
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("sid", &self.sid)
            .field("api_key", &self.api_key)
            .field("api_token", &"***")
            .field("subdomain", &self.subdomain)
            .field("base_url", &self.base_url.as_deref().map(redact_url))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acct() -> Account {
        Account::new("acme1", "key-1", "tok-SECRET-9f8e")
    }

    #[test]
    fn api_base_forms() {
        let mut a = acct();
        assert_eq!(a.api_base(), "https://api.exotel.com");
        a.subdomain = Account::INDIA_SUBDOMAIN.into();
        assert_eq!(a.api_base(), "https://api.in.exotel.com");
        a.subdomain = " api.in.exotel.com/ ".into();
        assert_eq!(a.api_base(), "https://api.in.exotel.com");
        a.subdomain = String::new();
        assert_eq!(a.api_base(), "https://api.exotel.com");
        a.base_url = Some("http://127.0.0.1:4010/".into());
        assert_eq!(a.api_base(), "http://127.0.0.1:4010");
        a.base_url = Some("  ".into());
        assert_eq!(a.api_base(), "https://api.exotel.com");
    }

    #[test]
    fn debug_hides_token() {
        let mut a = acct();
        a.base_url = Some("http://u:tok-SECRET-9f8e@127.0.0.1:4010".into());
        let d = format!("{a:?} {a:#?}");
        assert!(!d.contains("tok-SECRET-9f8e"), "{d}");
        assert!(d.contains("***") && d.contains("acme1") && d.contains("key-1"));
    }

    #[test]
    fn validation() {
        assert_eq!(acct().validate(), Ok(()));
        let field = |f: fn(&mut Account)| {
            let mut a = acct();
            f(&mut a);
            a.validate().unwrap_err().field().unwrap()
        };
        assert_eq!(field(|a| a.sid = String::new()), "AccountSid");
        assert_eq!(field(|a| a.sid = "a/b".into()), "AccountSid");
        assert_eq!(field(|a| a.api_key = " ".into()), "ApiKey");
        assert_eq!(field(|a| a.api_token = String::new()), "ApiToken");
        assert_eq!(field(|a| a.subdomain = "bad host/x y".into()), "Subdomain");
        assert_eq!(field(|a| a.base_url = Some("ftp://x".into())), "BaseUrl");
        assert_eq!(field(|a| a.base_url = Some("http://k:t@x".into())), "BaseUrl");
        let mut a = acct();
        a.base_url = Some("http://127.0.0.1:4010/prefix".into());
        assert_eq!(a.validate(), Ok(()));
    }
}
