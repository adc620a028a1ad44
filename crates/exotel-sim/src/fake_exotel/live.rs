//! How many calls were live on the fake account, and per caller id, at every moment: what a
//! campaign test asserts its limits on, from Exotel's side of the wire.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Changes recorded before the timeline stops growing (the peaks keep counting).
const MAX_CHANGES: usize = 100_000;

/// A call went live or ended: the counts right after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveChange {
    /// Since the fake started.
    pub at: Duration,
    pub caller_id: String,
    pub account_live: usize,
    pub caller_live: usize,
}

#[derive(Debug, Clone)]
pub struct LiveRecord {
    started: Instant,
    pub account_live: usize,
    pub caller_live: HashMap<String, usize>,
    pub account_peak: usize,
    pub caller_peak: HashMap<String, usize>,
    pub changes: Vec<LiveChange>,
    /// Changes not kept in `changes` (over [`MAX_CHANGES`]).
    pub changes_dropped: u64,
}

impl LiveRecord {
    pub(crate) fn new() -> Self {
        Self {
            started: Instant::now(),
            account_live: 0,
            caller_live: HashMap::new(),
            account_peak: 0,
            caller_peak: HashMap::new(),
            changes: Vec::new(),
            changes_dropped: 0,
        }
    }

    pub(crate) fn placed(&mut self, caller_id: &str) {
        self.account_live += 1;
        let n = self.caller_live.entry(caller_id.to_string()).or_default();
        *n += 1;
        let n = *n;
        self.account_peak = self.account_peak.max(self.account_live);
        let peak = self.caller_peak.entry(caller_id.to_string()).or_default();
        *peak = (*peak).max(n);
        self.record(caller_id, n);
    }

    pub(crate) fn ended(&mut self, caller_id: &str) {
        self.account_live = self.account_live.saturating_sub(1);
        let n = self.caller_live.entry(caller_id.to_string()).or_default();
        *n = n.saturating_sub(1);
        let n = *n;
        self.record(caller_id, n);
    }

    fn record(&mut self, caller_id: &str, caller_live: usize) {
        if self.changes.len() >= MAX_CHANGES {
            self.changes_dropped += 1;
            return;
        }
        self.changes.push(LiveChange {
            at: self.started.elapsed(),
            caller_id: caller_id.to_string(),
            account_live: self.account_live,
            caller_live,
        });
    }
}
