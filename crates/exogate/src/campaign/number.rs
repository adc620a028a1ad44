//! Phone numbers as people type them into a spreadsheet, made E.164. Indian forms are the common
//! case (`98765 43210`, `098765-43210`, `919876543210`, `+91 98765 43210`); other countries must
//! carry their `+` (or `00`) prefix.

/// The number in E.164 (`+919876543210`), or why it is not one.
pub fn normalize(raw: &str) -> Result<String, &'static str> {
    let text = raw.trim();
    if text.is_empty() {
        return Err("empty phone number");
    }
    let mut digits = String::with_capacity(text.len());
    let mut plus = false;
    for c in text.chars() {
        match c {
            '0'..='9' => digits.push(c),
            // Leading only: `+91 …`, `(+91) …`.
            '+' if digits.is_empty() && !plus => plus = true,
            ' ' | '-' | '.' | '(' | ')' | '\u{a0}' => {}
            _ => return Err("phone number has characters other than digits, spaces, dashes, dots and brackets"),
        }
    }
    if !plus {
        if let Some(rest) = digits.strip_prefix("00") {
            digits = rest.to_string();
            plus = true;
        }
    }
    let e164 = if plus {
        digits
    } else {
        match digits.len() {
            // 98765 43210, or a landline with its area code (80 4749 1899).
            10 => format!("91{digits}"),
            // The trunk prefix: 098765 43210.
            11 if digits.starts_with('0') => format!("91{}", &digits[1..]),
            // The country code without its plus: 91 98765 43210.
            12 if digits.starts_with("91") => digits,
            n if n < 10 => return Err("phone number is too short"),
            _ => return Err("phone number is not an Indian number; give other countries with +"),
        }
    };
    if e164.starts_with('0') {
        return Err("country code cannot start with 0");
    }
    if let Some(national) = e164.strip_prefix("91") {
        if national.len() != 10 {
            return Err("an Indian number has 10 digits after +91");
        }
        if national.starts_with('0') {
            return Err("an Indian number cannot start with 0 after +91");
        }
    }
    match e164.len() {
        0..=7 => Err("phone number is too short"),
        8..=15 => Ok(format!("+{e164}")),
        _ => Err("phone number is too long (E.164 allows 15 digits)"),
    }
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn indian_forms_become_e164() {
        for raw in [
            "9876543210",
            "98765 43210",
            "098765-43210",
            "09876543210",
            "919876543210",
            "+91 98765 43210",
            "+91-98765-43210",
            "(+91) 98765.43210",
            "0091 9876543210",
            " 9876543210 ",
        ] {
            assert_eq!(normalize(raw).as_deref(), Ok("+919876543210"), "{raw:?}");
        }
        assert_eq!(normalize("080 4749 1899").as_deref(), Ok("+918047491899"));
        assert_eq!(normalize("+1 415 555 0100").as_deref(), Ok("+14155550100"));
        assert_eq!(normalize("0044 20 7946 0000").as_deref(), Ok("+442079460000"));
    }

    #[test]
    fn bad_numbers_say_why() {
        let cases = [
            ("", "empty"),
            ("98765", "too short"),
            ("98765x43210", "characters"),
            ("+91 98765 4321", "10 digits"),
            ("+91 09876 54321", "cannot start with 0"),
            ("4155550100123", "not an Indian number"),
            ("+1234567890123456", "too long"),
            ("9+876543210", "characters"),
        ];
        for (raw, why) in cases {
            let e = normalize(raw).expect_err(raw);
            assert!(e.contains(why), "{raw:?}: {e}");
        }
    }
}
