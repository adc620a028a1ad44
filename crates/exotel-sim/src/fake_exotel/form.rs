//! Form bodies both ways: reading what a client POSTs (urlencoded or multipart) and writing the
//! multipart status callbacks Exotel sends.

/// The fields of a request body, in order. Exotel's API takes form data only, so a JSON (or any
/// other) body yields no fields, and the request then fails validation like a missing field.
pub(crate) fn parse_body(content_type: Option<&str>, body: &[u8]) -> Vec<(String, String)> {
    let media_type = content_type.map(|ct| ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
    match media_type.as_deref() {
        Some("multipart/form-data") => content_type.and_then(|ct| parse_multipart(ct, body)).unwrap_or_default(),
        // curl -d and most clients say urlencoded; a body without a type is read the same way.
        Some("application/x-www-form-urlencoded") | None => parse_urlencoded(body),
        Some(_) => Vec::new(),
    }
}

pub(crate) fn parse_urlencoded(body: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

/// Text fields of a `multipart/form-data` body; `None` without a boundary. File parts are read
/// as (lossy) text too: the API has no file fields.
pub(crate) fn parse_multipart(content_type: &str, body: &[u8]) -> Option<Vec<(String, String)>> {
    let boundary = content_type.split(';').skip(1).find_map(|param| {
        let (k, v) = param.split_once('=')?;
        k.trim().eq_ignore_ascii_case("boundary").then(|| v.trim().trim_matches('"').to_string())
    })?;
    if boundary.is_empty() {
        return None;
    }
    let body = String::from_utf8_lossy(body);
    let delimiter = format!("--{boundary}");
    let mut fields = Vec::new();
    // Before the first delimiter is the preamble; `--` after one marks the end.
    for part in body.split(delimiter.as_str()).skip(1) {
        if part.starts_with("--") {
            break;
        }
        let part = part.strip_prefix("\r\n").or_else(|| part.strip_prefix('\n')).unwrap_or(part);
        let Some((headers, value)) = part.split_once("\r\n\r\n").or_else(|| part.split_once("\n\n")) else {
            continue;
        };
        let value = value.strip_suffix("\r\n").or_else(|| value.strip_suffix('\n')).unwrap_or(value);
        if let Some(name) = headers.lines().find_map(disposition_name) {
            fields.push((name, value.to_string()));
        }
    }
    Some(fields)
}

/// `name` from `Content-Disposition: form-data; name="X"`.
fn disposition_name(header_line: &str) -> Option<String> {
    let (key, value) = header_line.split_once(':')?;
    if !key.trim().eq_ignore_ascii_case("content-disposition") {
        return None;
    }
    value.split(';').skip(1).find_map(|param| {
        let (k, v) = param.split_once('=')?;
        (k.trim() == "name").then(|| v.trim().trim_matches('"').to_string())
    })
}

/// A `multipart/form-data` body and its content type. Values are text; quotes and line breaks
/// in names are not expected (the names are Exotel's fixed field names).
pub(crate) fn build_multipart(fields: &[(String, String)], boundary: &str) -> (String, String) {
    let mut body = String::new();
    for (name, value) in fields {
        body.push_str(&format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// The first non-empty value of `name`. Clients often send optional fields empty; Exotel reads
/// an empty field as an absent one.
pub(crate) fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter().find(|(k, v)| k == name && !v.trim().is_empty()).map(|(_, v)| v.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn urlencoded_keeps_order_and_brackets() {
        let form = parse_body(
            Some("application/x-www-form-urlencoded"),
            b"From=%2B919876543210&StatusCallbackEvents%5B0%5D=terminal&StatusCallbackEvents[]=answered&X=a+b",
        );
        assert_eq!(
            form,
            pairs(&[
                ("From", "+919876543210"),
                ("StatusCallbackEvents[0]", "terminal"),
                ("StatusCallbackEvents[]", "answered"),
                ("X", "a b")
            ])
        );
        assert_eq!(parse_body(None, b"a=1"), pairs(&[("a", "1")]));
        assert!(parse_body(Some("application/json"), br#"{"From":"1"}"#).is_empty());
    }

    #[test]
    fn multipart_round_trip() {
        let fields =
            pairs(&[("CallSid", "abc"), ("Legs", r#"[{"Status":"completed"}]"#), ("Empty", ""), ("Multi", "a\r\nb")]);
        let (ct, body) = build_multipart(&fields, "XyZ");
        assert_eq!(ct, "multipart/form-data; boundary=XyZ");
        assert!(body.starts_with("--XyZ\r\nContent-Disposition: form-data; name=\"CallSid\"\r\n\r\nabc\r\n"));
        assert!(body.ends_with("--XyZ--\r\n"));
        assert_eq!(parse_body(Some(&ct), body.as_bytes()), fields);
    }

    #[test]
    fn multipart_from_other_clients() {
        // curl's shape: quoted boundary, a preamble, a part with a filename and its own type.
        let body = "preamble\r\n--b1\r\ncontent-disposition: form-data; name=\"From\"\r\n\r\n0987\r\n\
                    --b1\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.txt\"\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b1--\r\n";
        assert_eq!(
            parse_multipart("multipart/form-data; boundary=\"b1\"", body.as_bytes()),
            Some(pairs(&[("From", "0987"), ("f", "hi")]))
        );
        assert_eq!(parse_multipart("multipart/form-data", body.as_bytes()), None);
        assert!(parse_body(Some("multipart/form-data"), body.as_bytes()).is_empty());
    }

    #[test]
    fn empty_fields_count_as_absent() {
        let form = pairs(&[("A", ""), ("A", " x "), ("B", "  ")]);
        assert_eq!(field(&form, "A"), Some("x"));
        assert_eq!(field(&form, "B"), None);
        assert_eq!(field(&form, "C"), None);
    }
}
