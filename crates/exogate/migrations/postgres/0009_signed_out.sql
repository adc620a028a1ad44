-- Console sessions signed out before their cookie expired (twin of ../sqlite/0009_signed_out.sql).
CREATE TABLE signed_out (
    nonce       TEXT PRIMARY KEY,
    expires_at  BIGINT NOT NULL
);
