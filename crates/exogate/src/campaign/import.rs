//! A campaign's contact list from a CSV file: a phone column (found by name, or chosen) and any
//! other columns, which become each call's variables. A file that can't be read as a whole
//! (not UTF-8, no phone column, no rows, a line over the limit, a broken row) is refused; within
//! a readable file, bad numbers are reported per line and duplicates dropped.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use super::number;

/// Header names taken as the phone column, in this order, when none is chosen.
const PHONE_COLUMNS: [&str; 6] = ["phone", "number", "to", "mobile", "phone_number", "msisdn"];
/// Longest line accepted: a contact is a handful of short fields.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Most contacts in one campaign.
pub const MAX_CONTACTS: usize = 1_000_000;
/// Line errors reported back; the count goes on.
const MAX_REPORTED: usize = 1000;

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LineError {
    /// 1-based line of the file (the header is line 1).
    pub line: u64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Contact {
    pub line: u64,
    /// E.164.
    pub phone: String,
    /// Every other column, by header name.
    pub vars: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
pub struct Import {
    pub phone_column: String,
    pub columns: Vec<String>,
    pub contacts: Vec<Contact>,
    /// Lines skipped: a bad number, or a repeat of a number already in the list.
    pub rejected: Vec<LineError>,
    pub rejected_total: u64,
}

/// Why nothing was imported.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{error}")]
pub struct FileError {
    pub error: String,
    pub errors: Vec<LineError>,
}

impl FileError {
    fn whole(error: impl Into<String>) -> Self {
        Self { error: error.into(), errors: Vec::new() }
    }
}

pub fn parse(bytes: &[u8], phone_column: Option<&str>) -> Result<Import, FileError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    check_lines(bytes)?;
    let mut reader = csv::ReaderBuilder::new().flexible(false).trim(csv::Trim::All).from_reader(bytes);
    let headers: Vec<String> = match reader.headers() {
        Ok(h) => h.iter().map(str::to_string).collect(),
        Err(e) => return Err(FileError::whole(format!("the header line cannot be read: {e}"))),
    };
    if headers.iter().all(String::is_empty) {
        return Err(FileError::whole("the file is empty: it needs a header line and at least one contact"));
    }
    let phone_at = match phone_column {
        Some(name) => headers
            .iter()
            .position(|h| h.eq_ignore_ascii_case(name))
            .ok_or_else(|| FileError::whole(format!("no column named {name:?} (columns: {})", headers.join(", "))))?,
        None => PHONE_COLUMNS
            .iter()
            .find_map(|want| headers.iter().position(|h| h.eq_ignore_ascii_case(want)))
            .ok_or_else(|| {
                FileError::whole(format!(
                    "no phone column: name one phone, number or to, or choose it (columns: {})",
                    headers.join(", ")
                ))
            })?,
    };
    let mut out = Import { phone_column: headers[phone_at].clone(), columns: headers.clone(), ..Import::default() };
    let mut seen = HashSet::new();
    let mut broken = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                broken.push(LineError { line, reason: csv_reason(&e) });
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        if record.iter().all(str::is_empty) {
            continue;
        }
        let reject = |out: &mut Import, reason: String| {
            out.rejected_total += 1;
            if out.rejected.len() < MAX_REPORTED {
                out.rejected.push(LineError { line, reason });
            }
        };
        let phone = match number::normalize(record.get(phone_at).unwrap_or_default()) {
            Ok(p) => p,
            Err(why) => {
                reject(&mut out, why.to_string());
                continue;
            }
        };
        if !seen.insert(phone.clone()) {
            reject(&mut out, format!("duplicate of an earlier line's {phone}"));
            continue;
        }
        if out.contacts.len() >= MAX_CONTACTS {
            return Err(FileError::whole(format!("more than {MAX_CONTACTS} contacts in one campaign")));
        }
        let vars = headers
            .iter()
            .zip(record.iter())
            .enumerate()
            .filter(|(i, (h, _))| *i != phone_at && !h.is_empty())
            .map(|(_, (h, v))| (h.clone(), v.to_string()))
            .collect();
        out.contacts.push(Contact { line, phone, vars });
    }
    if !broken.is_empty() {
        broken.truncate(MAX_REPORTED);
        return Err(FileError { error: "some lines cannot be read; nothing was imported".into(), errors: broken });
    }
    if out.contacts.is_empty() {
        let mut e = FileError::whole("no usable contacts: every line was rejected or the file has no rows");
        e.errors = out.rejected;
        return Err(e);
    }
    Ok(out)
}

/// The whole file is UTF-8 and no line is longer than [`MAX_LINE_BYTES`]: checked before parsing,
/// so the errors name lines, and a huge line is refused before it is buffered as a field.
fn check_lines(bytes: &[u8]) -> Result<(), FileError> {
    let mut errors = Vec::new();
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        let reason = if line.len() > MAX_LINE_BYTES {
            Some(format!("line is {} bytes, over the limit of {MAX_LINE_BYTES}", line.len()))
        } else if std::str::from_utf8(line).is_err() {
            Some("not UTF-8 text (save the file as UTF-8; Latin-1 and Excel's ANSI are not read)".to_string())
        } else {
            None
        };
        if let Some(reason) = reason {
            if errors.len() < MAX_REPORTED {
                errors.push(LineError { line: i as u64 + 1, reason });
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(FileError { error: "the file cannot be read; nothing was imported".into(), errors })
    }
}

fn csv_reason(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            format!("{len} fields where the header has {expected_len}")
        }
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_become_variables_and_numbers_are_normalized() {
        let csv = "\u{feff}name,Phone,due\nAsha,98765 43210,₹1200\nRavi,+91 91234 56789,₹300\n";
        let import = parse(csv.as_bytes(), None).unwrap();
        assert_eq!(import.phone_column, "Phone");
        assert_eq!(import.contacts.len(), 2);
        let c = &import.contacts[0];
        assert_eq!((c.line, c.phone.as_str()), (2, "+919876543210"));
        assert_eq!(c.vars.get("name").map(String::as_str), Some("Asha"));
        assert_eq!(c.vars.get("due").map(String::as_str), Some("₹1200"));
        assert!(!c.vars.contains_key("Phone"));
    }

    #[test]
    fn bad_numbers_and_duplicates_are_reported_by_line() {
        let csv = "to,name\n9876543210,a\nabc,b\n+919876543210,c\n\n9123456789,d\n";
        let import = parse(csv.as_bytes(), None).unwrap();
        let phones: Vec<_> = import.contacts.iter().map(|c| c.phone.as_str()).collect();
        assert_eq!(phones, ["+919876543210", "+919123456789"]);
        assert_eq!(import.rejected.len(), 2);
        assert_eq!(import.rejected[0].line, 3);
        assert!(import.rejected[0].reason.contains("characters"));
        assert_eq!(import.rejected[1].line, 4);
        assert!(import.rejected[1].reason.contains("duplicate"));
    }

    #[test]
    fn a_chosen_column_wins() {
        let csv = "phone,alt\n9876543210,9123456789\n";
        let import = parse(csv.as_bytes(), Some("alt")).unwrap();
        assert_eq!(import.contacts[0].phone, "+919123456789");
        assert_eq!(import.contacts[0].vars.get("phone").map(String::as_str), Some("9876543210"));
        assert!(parse(csv.as_bytes(), Some("nope")).unwrap_err().error.contains("no column named"));
    }

    #[test]
    fn unreadable_files_import_nothing() {
        let no_phone = parse(b"name,city\nAsha,Pune\n", None).unwrap_err();
        assert!(no_phone.error.contains("no phone column"), "{no_phone:?}");
        assert!(parse(b"", None).unwrap_err().error.contains("empty"));
        assert!(parse(b"phone\n", None).unwrap_err().error.contains("no usable contacts"));
        let all_bad = parse(b"phone\nabc\n12\n", None).unwrap_err();
        assert_eq!(all_bad.errors.len(), 2);

        let latin1 = b"phone,name\n9876543210,Jos\xe9\n9123456789,Ann\n";
        let e = parse(latin1, None).unwrap_err();
        assert_eq!(e.errors, vec![LineError { line: 2, reason: e.errors[0].reason.clone() }]);
        assert!(e.errors[0].reason.contains("UTF-8"));

        let mut huge = b"phone,note\n9876543210,".to_vec();
        huge.extend(std::iter::repeat_n(b'x', 1 << 20));
        huge.extend(b"\n9123456789,ok\n");
        let e = parse(&huge, None).unwrap_err();
        assert_eq!(e.errors.len(), 1);
        assert_eq!(e.errors[0].line, 2);
        assert!(e.errors[0].reason.contains("over the limit"));

        let ragged = parse(b"phone,name\n9876543210,a\n9123456789,b,extra\n", None).unwrap_err();
        assert_eq!(ragged.errors[0].line, 3);
        assert!(ragged.errors[0].reason.contains("3 fields"), "{ragged:?}");
    }

    #[test]
    fn a_large_file_imports() {
        let mut csv = String::from("phone,name\n");
        for i in 0..100_000u64 {
            csv.push_str(&format!("9{:09},n{i}\n", i));
        }
        let import = parse(csv.as_bytes(), None).unwrap();
        assert_eq!(import.contacts.len(), 100_000);
    }

    // The property `fuzz/fuzz_targets/campaign_csv.rs` checks at length, kept in CI.
    mod any_file {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn imports_clean_numbers_once_or_refuses(
                rows in prop::collection::vec(
                    (prop_oneof![r"\+?[0-9 ()-]{0,16}", "0[6-9][0-9]{9}", ".{0,10}"], ".{0,10}"),
                    0..30,
                ),
                header in prop_oneof![Just("phone,name"), Just("name,mobile"), Just("a,b")],
            ) {
                let mut text = format!("{header}\n");
                for (a, b) in &rows {
                    text.push_str(&format!("{a},{b}\n"));
                }
                if let Ok(import) = parse(text.as_bytes(), None) {
                    let mut seen = std::collections::HashSet::new();
                    for c in &import.contacts {
                        prop_assert!(c.phone.starts_with('+') && c.phone[1..].bytes().all(|b| b.is_ascii_digit()));
                        prop_assert!(seen.insert(c.phone.clone()));
                    }
                }
            }

            #[test]
            fn any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
                let _ = parse(&bytes, None);
            }
        }
    }
}
