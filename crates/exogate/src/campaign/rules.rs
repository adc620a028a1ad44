//! A campaign's dialing rules as given to the API: the calling window (fail-closed: anything
//! unclear refuses the campaign, never dials at a wrong hour) and the retries by outcome.

use std::collections::BTreeMap;

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use serde::{Deserialize, Serialize};

pub const DEFAULT_TIMEZONE: &str = "Asia/Kolkata";
const DAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Monday),
    ("tue", Weekday::Tuesday),
    ("wed", Weekday::Wednesday),
    ("thu", Weekday::Thursday),
    ("fri", Weekday::Friday),
    ("sat", Weekday::Saturday),
    ("sun", Weekday::Sunday),
];

/// The window as stored and shown: calls are placed from `start` to `end` (`HH:MM`) on `days`
/// (`mon`..`sun`) in `timezone` (IANA).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WindowSpec {
    #[serde(default = "default_start")]
    #[schema(pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$", example = "09:00")]
    pub start: String,
    /// After `start`.
    #[serde(default = "default_end")]
    #[schema(pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$", example = "21:00")]
    pub end: String,
    /// At least one; a day's name or its first three letters, any case.
    #[serde(default = "default_days")]
    #[schema(min_items = 1, example = json!(["mon", "tue", "wed", "thu", "fri"]))]
    pub days: Vec<String>,
    #[serde(default = "default_timezone")]
    #[schema(example = "Asia/Kolkata")]
    pub timezone: String,
}

fn default_start() -> String {
    "09:00".into()
}
fn default_end() -> String {
    "21:00".into()
}
fn default_days() -> Vec<String> {
    DAYS.iter().map(|(d, _)| d.to_string()).collect()
}
fn default_timezone() -> String {
    DEFAULT_TIMEZONE.into()
}

impl Default for WindowSpec {
    fn default() -> Self {
        Self { start: default_start(), end: default_end(), days: default_days(), timezone: default_timezone() }
    }
}

/// A checked window: when calls may be placed.
#[derive(Debug, Clone)]
pub struct Window {
    start: Time,
    end: Time,
    days: Vec<Weekday>,
    tz: TimeZone,
}

impl Window {
    pub fn parse(spec: &WindowSpec) -> Result<Self, String> {
        let time = |field: &str, v: &str| {
            let ok = v.len() == 5 && v.as_bytes()[2] == b':';
            let parsed = ok.then(|| v.parse::<Time>().ok()).flatten();
            parsed.ok_or_else(|| format!("window.{field}: {v:?} is not a time of day as HH:MM"))
        };
        let start = time("start", &spec.start)?;
        let end = time("end", &spec.end)?;
        if end <= start {
            return Err(format!("window.end ({}) must be after window.start ({})", spec.end, spec.start));
        }
        if spec.days.is_empty() {
            return Err("window.days: at least one day is needed".into());
        }
        let mut days = Vec::new();
        for d in &spec.days {
            let lower = d.to_ascii_lowercase();
            let day = DAYS.iter().find(|(name, _)| lower.starts_with(name) && lower.len() <= 9).map(|(_, w)| *w);
            match day {
                Some(w) => days.push(w),
                None => return Err(format!("window.days: {d:?} is not a day (mon, tue, … sun)")),
            }
        }
        let tz = TimeZone::get(&spec.timezone)
            .map_err(|_| format!("window.timezone: {:?} is not an IANA time zone", spec.timezone))?;
        Ok(Self { start, end, days, tz })
    }

    pub fn is_open(&self, at: Timestamp) -> bool {
        let local = at.to_zoned(self.tz.clone());
        let t = local.time();
        self.days.contains(&local.weekday()) && t >= self.start && t < self.end
    }

    /// `at` itself when open, else the next opening (within a week: some day is always allowed).
    pub fn next_open(&self, at: Timestamp) -> Timestamp {
        if self.is_open(at) {
            return at;
        }
        let local = at.to_zoned(self.tz.clone());
        for ahead in 0..8 {
            let Ok(day) = local.date().checked_add(ahead.days()) else { break };
            if !self.days.contains(&day.weekday()) {
                continue;
            }
            let Ok(open) = day.to_datetime(self.start).to_zoned(self.tz.clone()) else { continue };
            if open.timestamp() > at {
                return open.timestamp();
            }
        }
        // Unreachable with a non-empty day list; a day ahead keeps the dialer waiting, not dialing.
        at.checked_add(jiff::SignedDuration::from_hours(24)).unwrap_or(at)
    }
}

/// Retries for one outcome: wait `after_secs`, and stop once the contact has been dialed
/// `max_attempts` times in all (the first dial counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Retry {
    /// At most a week.
    #[schema(maximum = 604800, example = 600)]
    pub after_secs: u64,
    /// The first dial counts.
    #[schema(minimum = 1, maximum = 20, example = 3)]
    pub max_attempts: u32,
}

/// Outcomes that may be retried; anything else (completed, an invalid number, a refusal) is final.
pub const RETRYABLE: [&str; 3] = ["busy", "no-answer", "failed"];

pub fn check_retry(retry: &BTreeMap<String, Retry>) -> Result<(), String> {
    for (outcome, r) in retry {
        if !RETRYABLE.contains(&outcome.as_str()) {
            return Err(format!("retry.{outcome}: only busy, no-answer and failed can be retried"));
        }
        if r.max_attempts == 0 || r.max_attempts > 20 {
            return Err(format!("retry.{outcome}.max_attempts must be 1..20 (the first dial counts)"));
        }
        if r.after_secs > 7 * 86_400 {
            return Err(format!("retry.{outcome}.after_secs must be at most a week"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(start: &str, end: &str, days: &[&str], tz: &str) -> WindowSpec {
        WindowSpec {
            start: start.into(),
            end: end.into(),
            days: days.iter().map(|d| d.to_string()).collect(),
            timezone: tz.into(),
        }
    }

    #[test]
    fn bad_windows_are_refused_with_the_field() {
        let cases = [
            (spec("9:00", "21:00", &["mon"], "Asia/Kolkata"), "window.start"),
            (spec("09:00", "25:00", &["mon"], "Asia/Kolkata"), "window.end"),
            (spec("21:00", "09:00", &["mon"], "Asia/Kolkata"), "must be after"),
            (spec("09:00", "21:00", &[], "Asia/Kolkata"), "window.days"),
            (spec("09:00", "21:00", &["funday"], "Asia/Kolkata"), "window.days"),
            (spec("09:00", "21:00", &["mon"], "Asia/Mumbai"), "window.timezone"),
            (spec("09:00", "21:00", &["mon"], ""), "window.timezone"),
        ];
        for (s, field) in cases {
            let e = Window::parse(&s).unwrap_err();
            assert!(e.contains(field), "{s:?}: {e}");
        }
    }

    #[test]
    fn the_window_is_in_its_own_zone() {
        let w = Window::parse(&WindowSpec::default()).unwrap();
        // 2026-12-07 is a Monday. 03:00 UTC is 08:30 in Kolkata: closed, opens at 09:00 IST = 03:30 UTC.
        let early: Timestamp = "2026-12-07T03:00:00Z".parse().unwrap();
        assert!(!w.is_open(early));
        assert_eq!(w.next_open(early), "2026-12-07T03:30:00Z".parse::<Timestamp>().unwrap());
        let open: Timestamp = "2026-12-07T10:00:00Z".parse().unwrap();
        assert!(w.is_open(open));
        assert_eq!(w.next_open(open), open);
        // 21:00 IST is closed (the end is exclusive); the next opening is tomorrow 09:00 IST.
        let late: Timestamp = "2026-12-07T15:30:00Z".parse().unwrap();
        assert!(!w.is_open(late));
        assert_eq!(w.next_open(late), "2026-12-08T03:30:00Z".parse::<Timestamp>().unwrap());

        let weekdays =
            Window::parse(&spec("10:00", "18:00", &["mon", "tue", "wed", "thu", "fri"], "Asia/Kolkata")).unwrap();
        // Saturday 2026-12-12 noon IST → Monday 10:00 IST.
        let saturday: Timestamp = "2026-12-12T06:30:00Z".parse().unwrap();
        assert!(!weekdays.is_open(saturday));
        assert_eq!(weekdays.next_open(saturday), "2026-12-14T04:30:00Z".parse::<Timestamp>().unwrap());
    }

    #[test]
    fn retries_only_for_retryable_outcomes() {
        let mut r = BTreeMap::new();
        r.insert("busy".to_string(), Retry { after_secs: 300, max_attempts: 3 });
        assert!(check_retry(&r).is_ok());
        r.insert("completed".to_string(), Retry { after_secs: 1, max_attempts: 2 });
        assert!(check_retry(&r).unwrap_err().contains("retry.completed"));
        r.remove("completed");
        r.insert("failed".to_string(), Retry { after_secs: 1, max_attempts: 0 });
        assert!(check_retry(&r).unwrap_err().contains("max_attempts"));
    }
}
