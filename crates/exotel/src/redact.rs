//! Log hygiene: phone numbers masked, credentials stripped from URLs (docs/protocol.md §11.7).

/// `+919876543210` → `+91******3210`; short values are masked whole.
pub fn mask_phone(number: &str) -> String {
    let chars: Vec<char> = number.chars().collect();
    let digits = chars.iter().filter(|c| c.is_ascii_digit()).count();
    if digits < 7 {
        return "*".repeat(chars.len().max(1));
    }
    let keep_head = if chars.first() == Some(&'+') { 3 } else { 2 };
    let keep_tail = 4;
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| if i < keep_head || i + keep_tail >= chars.len() { *c } else { '*' })
        .collect()
}

/// Drops `user:password@` and the query string (which may carry tokens) from a URL.
pub fn redact_url(url: &str) -> String {
    let without_query = url.split(['?', '#']).next().unwrap_or_default();
    match without_query.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            let creds = if authority.contains('@') { "***@" } else { "" };
            format!("{scheme}://{creds}{host}{path}")
        }
        None => without_query.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(mask_phone("+919876543210"), "+91******3210");
        assert_eq!(mask_phone("09876543210"), "09*****3210");
        assert_eq!(mask_phone("123"), "***");
        assert_eq!(mask_phone(""), "*");
    }

    #[test]
    fn urls() {
        assert_eq!(redact_url("wss://KEY:TOKEN@stream.example.com/media?t=abc"), "wss://***@stream.example.com/media");
        assert_eq!(redact_url("ws://10.0.0.1:5007/media"), "ws://10.0.0.1:5007/media");
        assert_eq!(redact_url("wss://u:p@h"), "wss://***@h");
    }
}
