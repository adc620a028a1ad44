-- A placed call's variables (a campaign contact's columns), kept apart from what Exotel passes
-- as custom parameters so no webhook or stream start overwrites them.
ALTER TABLE calls ADD COLUMN vars TEXT;

-- An account's calls in the air, counted against its limits on every dial.
CREATE INDEX calls_account_live ON calls (account_sid, status);
