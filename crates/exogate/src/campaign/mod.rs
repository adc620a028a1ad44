//! Campaigns: a contact list dialed within concurrency, rate and calling-window limits, with
//! retries by outcome. Importing and the rules are here; the store keeps every contact's state so
//! the dialer survives a restart.

pub mod import;
pub mod number;
pub mod rules;
pub mod runner;
