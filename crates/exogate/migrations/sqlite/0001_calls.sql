-- One row per call, merged by Exotel's CallSid (or stream_sid when a stream arrives unannounced).
CREATE TABLE calls (
    id                     TEXT PRIMARY KEY,
    call_sid               TEXT UNIQUE,
    stream_sid             TEXT,
    account_sid            TEXT,
    direction              TEXT,
    from_number            TEXT,
    to_number              TEXT,
    custom_field           TEXT,
    custom_params          TEXT,
    agent                  TEXT,
    sample_rate            INTEGER,
    status                 TEXT NOT NULL,
    created_at             TEXT NOT NULL,
    updated_at             TEXT NOT NULL,
    started_at             TEXT,
    ended_at               TEXT,
    duration_ms            INTEGER,
    frames_in              INTEGER,
    bytes_in               INTEGER,
    frames_out             INTEGER,
    bytes_out              INTEGER,
    marks_sent             INTEGER,
    marks_played           INTEGER,
    clears                 INTEGER,
    dtmf                   TEXT,
    stop_reason            TEXT,
    close_code             INTEGER,
    bad_messages           INTEGER NOT NULL DEFAULT 0,
    seq_gaps               INTEGER,
    call_type              TEXT,
    digits                 TEXT,
    flow_id                TEXT,
    recording_url          TEXT,
    passthru_count         INTEGER NOT NULL DEFAULT 0,
    stream_status          TEXT,
    stream_duration        TEXT,
    stream_disconnected_by TEXT,
    stream_recording_url   TEXT,
    stream_detailed_status TEXT,
    stream_error           TEXT,
    stream_url             TEXT
);
CREATE INDEX calls_stream_sid ON calls (stream_sid);
CREATE INDEX calls_created_at ON calls (created_at);
CREATE INDEX calls_status ON calls (status, created_at);

CREATE TABLE call_events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL REFERENCES calls (id),
    at      TEXT NOT NULL,
    kind    TEXT NOT NULL,
    detail  TEXT
);
CREATE INDEX call_events_call ON call_events (call_id, id);
