-- Dashboard sign-in sessions. A session is a random token in an HttpOnly cookie; only its
-- SHA-256 is stored, so a database dump signs nobody in. Kept in PostgreSQL (not in a
-- process) so that any replica serving the port knows it, sign-out ends it everywhere at
-- once, and a revoked key ends its sessions (they join `api_keys` on every page).
CREATE TABLE dashboard_sessions (
    token_hash text PRIMARY KEY,
    key_id text NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    csrf_token text NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX dashboard_sessions_expiry ON dashboard_sessions (expires_at);
