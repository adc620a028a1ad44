-- PostgreSQL twin of ../sqlite/0003_agents_v2.sql: same tables, same versions.
-- Agent API v2: what the agent did with the call, and what it lost.
ALTER TABLE calls ADD COLUMN transfer_to TEXT;
ALTER TABLE calls ADD COLUMN agent_failure TEXT;
ALTER TABLE calls ADD COLUMN agent_fallback TEXT;
ALTER TABLE calls ADD COLUMN agent_note TEXT;
ALTER TABLE calls ADD COLUMN dropped_in_bytes BIGINT;
ALTER TABLE calls ADD COLUMN dropped_out_bytes BIGINT;
