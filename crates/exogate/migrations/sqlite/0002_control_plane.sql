-- Phones: ExoPhones with their own Exotel account. The API token is stored encrypted (AES-256-GCM).
CREATE TABLE phones (
    id              TEXT PRIMARY KEY,
    number          TEXT NOT NULL UNIQUE,
    account_sid     TEXT NOT NULL,
    api_key         TEXT NOT NULL,
    api_token_enc   BLOB NOT NULL,
    subdomain       TEXT NOT NULL,
    app_id          TEXT,
    default_agent   TEXT,
    max_concurrent  INTEGER,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);

CREATE TABLE agents (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    settings    TEXT NOT NULL DEFAULT '{}',
    greeting    TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

ALTER TABLE calls ADD COLUMN phone_id TEXT;
ALTER TABLE calls ADD COLUMN mode TEXT;
ALTER TABLE calls ADD COLUMN legs TEXT;
ALTER TABLE calls ADD COLUMN conversation_duration INTEGER;
ALTER TABLE calls ADD COLUMN error_kind TEXT;
ALTER TABLE calls ADD COLUMN error_message TEXT;
ALTER TABLE calls ADD COLUMN bot_decision TEXT;
ALTER TABLE calls ADD COLUMN exotel_status TEXT;
CREATE INDEX calls_phone ON calls (phone_id, created_at);
CREATE INDEX calls_agent ON calls (agent, created_at);
CREATE INDEX calls_custom_field ON calls (custom_field);

-- Status callbacks already applied (Exotel retries up to twice).
CREATE TABLE callbacks_seen (
    call_id   TEXT NOT NULL,
    event_key TEXT NOT NULL,
    at        TEXT NOT NULL,
    PRIMARY KEY (call_id, event_key)
);
