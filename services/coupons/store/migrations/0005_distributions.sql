-- Codes given to contacts (projection "campaigns").
ALTER TABLE campaigns ADD COLUMN distributed bigint NOT NULL DEFAULT 0;

CREATE TABLE distributions (
    distribution_id text        PRIMARY KEY,
    campaign_id     text        NOT NULL,
    code            text        NOT NULL,
    contact_id      text        NOT NULL,
    email           text,
    channel         text        NOT NULL,
    source_ref      text,
    expires_at      timestamptz,
    distributed_at  timestamptz NOT NULL
);

CREATE INDEX distributions_by_contact ON distributions (contact_id, distributed_at);
