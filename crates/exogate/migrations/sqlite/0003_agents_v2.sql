-- Agent API v2: what the agent did with the call, and what it lost.
ALTER TABLE calls ADD COLUMN transfer_to TEXT;
ALTER TABLE calls ADD COLUMN agent_failure TEXT;
ALTER TABLE calls ADD COLUMN agent_fallback TEXT;
ALTER TABLE calls ADD COLUMN agent_note TEXT;
ALTER TABLE calls ADD COLUMN dropped_in_bytes INTEGER;
ALTER TABLE calls ADD COLUMN dropped_out_bytes INTEGER;
