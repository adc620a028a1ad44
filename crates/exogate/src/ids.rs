//! Identifiers we mint. Time-ordered (UUIDv7) so call ids sort by creation.

pub fn call_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// A stream id for a `start` that carried none (an older Exotel form does that).
pub fn stream_sid() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// This process, among the gateways sharing one database.
pub fn instance_id() -> String {
    format!("gw-{}", uuid::Uuid::new_v4().simple())
}
