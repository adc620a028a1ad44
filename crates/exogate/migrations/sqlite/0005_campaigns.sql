-- Campaigns: a contact list dialed within limits. Every contact's state lives here, so a restart
-- resumes where the dialer was, and several gateways share the work through leases.
CREATE TABLE campaigns (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    agent            TEXT NOT NULL,
    phone_id         TEXT,
    -- The Exotel account it dials through: account-wide limits count across its campaigns.
    account_sid      TEXT NOT NULL,
    status           TEXT NOT NULL,
    max_concurrent   INTEGER NOT NULL,
    calls_per_minute INTEGER NOT NULL,
    window_spec      TEXT NOT NULL,
    retry            TEXT NOT NULL,
    phone_column     TEXT NOT NULL,
    columns          TEXT NOT NULL,
    contacts         INTEGER NOT NULL,
    rejected         INTEGER NOT NULL,
    status_reason    TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    started_at       TEXT,
    ended_at         TEXT
);

CREATE TABLE campaign_contacts (
    campaign_id   TEXT NOT NULL REFERENCES campaigns (id),
    seq           INTEGER NOT NULL,
    line          INTEGER NOT NULL,
    phone         TEXT NOT NULL,
    vars          TEXT NOT NULL,
    state         TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_at       TEXT,
    last_call_id  TEXT,
    last_outcome  TEXT,
    lease_owner   TEXT,
    lease_until   TEXT,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (campaign_id, seq)
);
CREATE INDEX campaign_contacts_due ON campaign_contacts (campaign_id, state, next_at);

-- Every dial a campaign started, when: the per-minute rate is counted here, in the same
-- transaction as the claim, so it holds across gateways.
CREATE TABLE campaign_dials (
    campaign_id TEXT NOT NULL,
    account_sid TEXT NOT NULL,
    at          TEXT NOT NULL
);
CREATE INDEX campaign_dials_at ON campaign_dials (campaign_id, at);
CREATE INDEX campaign_dials_account ON campaign_dials (account_sid, at);

ALTER TABLE calls ADD COLUMN campaign_id TEXT;
ALTER TABLE calls ADD COLUMN contact_seq INTEGER;
CREATE INDEX calls_campaign ON calls (campaign_id, contact_seq);
