-- Console sessions signed out before their cookie expired. The cookie is stateless (signed with
-- a key derived from the API key), so signing out records its nonce here, and every gateway on
-- the database refuses it from then on. A row goes once its cookie would have expired anyway.
CREATE TABLE signed_out (
    nonce       TEXT PRIMARY KEY,
    expires_at  BIGINT NOT NULL
);
