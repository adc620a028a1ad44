-- PostgreSQL twin of ../sqlite/0004_instances.sql.
-- Several gateways on one database: which one runs each call's media, and which are alive, so a
-- gateway that starts marks only a dead one's calls interrupted.
ALTER TABLE calls ADD COLUMN instance_id TEXT;
CREATE INDEX calls_instance ON calls (instance_id, status);
CREATE TABLE instances (
    id          TEXT PRIMARY KEY,
    started_at  TEXT NOT NULL,
    seen_at     TEXT NOT NULL
);
