-- API keys (write side, not a projection): only a SHA-256 of each key is stored.
CREATE TABLE api_keys (
    id         text        PRIMARY KEY,
    name       text        NOT NULL,
    scope      text        NOT NULL CHECK (scope IN ('admin', 'checkout', 'analyst')),
    key_hash   text        NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

-- The audit trail (projection "campaigns"): every decision about a campaign, who asked and why.
CREATE TABLE campaign_audit (
    event_id       uuid        PRIMARY KEY,
    campaign_id    text        NOT NULL,
    type           text        NOT NULL,
    actor          text,
    occurred_at    timestamptz NOT NULL,
    correlation_id text        NOT NULL,
    detail         jsonb       NOT NULL
);

CREATE INDEX campaign_audit_by_campaign ON campaign_audit (campaign_id, occurred_at);
