//! CPU time and resident memory of a process, from Linux's /proc: `utime + stime` from
//! `/proc/<pid>/stat` (all threads, in clock ticks) and `VmRSS` from `/proc/<pid>/status`.

use std::io;
use std::time::Instant;

/// `/proc` reports CPU time in USER_HZ ticks, which the kernel fixes at 100 on every architecture
/// Linux ships for (the `CLK_TCK` that `getconf` prints); reading it would take `libc` and
/// `unsafe` for a constant.
pub const TICKS_PER_SEC: u64 = 100;

/// Which process: ourselves or another one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pid {
    SelfProc,
    Other(u32),
}

impl Pid {
    fn path(self, file: &str) -> String {
        match self {
            Self::SelfProc => format!("/proc/self/{file}"),
            Self::Other(pid) => format!("/proc/{pid}/{file}"),
        }
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// `(utime, stime)` in ticks from the text of `/proc/<pid>/stat`. The command name (field 2) is
/// in parentheses and may itself hold spaces and parentheses, so fields are counted from the
/// last `)`: after it come state (field 3) … utime (14) and stime (15).
pub fn parse_stat_ticks(text: &str) -> Option<(u64, u64)> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

/// `VmRSS` in KiB from the text of `/proc/<pid>/status`.
pub fn parse_vm_rss_kib(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line["VmRSS:".len()..].split_ascii_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => Some(value),
        Some(_) => None,
    }
}

/// `(utime, stime)` in ticks, all threads.
pub fn cpu_ticks(pid: Pid) -> io::Result<(u64, u64)> {
    let text = std::fs::read_to_string(pid.path("stat"))?;
    parse_stat_ticks(&text).ok_or_else(|| invalid("unreadable /proc/<pid>/stat"))
}

pub fn rss_kib(pid: Pid) -> io::Result<u64> {
    let text = std::fs::read_to_string(pid.path("status"))?;
    parse_vm_rss_kib(&text).ok_or_else(|| invalid("no VmRSS in /proc/<pid>/status"))
}

/// One reading of a process's CPU time.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    pub at: Instant,
    pub user: u64,
    pub system: u64,
}

impl CpuSample {
    pub fn take(pid: Pid) -> io::Result<Self> {
        let (user, system) = cpu_ticks(pid)?;
        Ok(Self { at: Instant::now(), user, system })
    }
}

/// Average cores used between two readings (1.0 = one core busy all the time): user, system.
pub fn cores_between(a: CpuSample, b: CpuSample) -> (f64, f64) {
    let secs = b.at.saturating_duration_since(a.at).as_secs_f64();
    if secs <= 0.0 {
        return (0.0, 0.0);
    }
    let per_sec = |ticks: u64| ticks as f64 / TICKS_PER_SEC as f64 / secs;
    (per_sec(b.user.saturating_sub(a.user)), per_sec(b.system.saturating_sub(a.system)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const STAT: &str = "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 12012 0 0 0 1234 567 0 0 20 0 3 0 \
                        55102 1047851008 9421 18446744073709551615 1 1 0 0 0 0 0 4096 1088 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn stat_fields_count_from_the_last_parenthesis() {
        assert_eq!(parse_stat_ticks(STAT), Some((1234, 567)));
        assert_eq!(parse_stat_ticks("1 (a) S 0 0"), None, "truncated");
        assert_eq!(parse_stat_ticks("no parens"), None);
    }

    #[test]
    fn vm_rss() {
        let status = "Name:\texogate\nVmPeak:\t  900000 kB\nVmRSS:\t   12345 kB\nRssAnon:\t  10000 kB\n";
        assert_eq!(parse_vm_rss_kib(status), Some(12345));
        assert_eq!(parse_vm_rss_kib("Name:\tx\n"), None, "kernel threads have no VmRSS");
        assert_eq!(parse_vm_rss_kib("VmRSS:\t 1 MB\n"), None);
    }

    #[test]
    fn cores_from_ticks() {
        let t0 = Instant::now();
        let a = CpuSample { at: t0, user: 1000, system: 50 };
        let b = CpuSample { at: t0 + Duration::from_secs(20), user: 1000 + 600, system: 50 + 200 };
        let (user, system) = cores_between(a, b);
        assert!((user - 0.3).abs() < 1e-9 && (system - 0.1).abs() < 1e-9, "{user} {system}");
        assert_eq!(cores_between(b, a), (0.0, 0.0));
    }

    #[test]
    fn reads_our_own_process() {
        assert!(rss_kib(Pid::SelfProc).unwrap() > 0);
        cpu_ticks(Pid::SelfProc).unwrap();
        assert!(cpu_ticks(Pid::Other(u32::MAX)).is_err());
    }
}
