-- Unique codes of each campaign (projection "campaigns").
CREATE TABLE codes (
    code           text        PRIMARY KEY,
    campaign_id    text        NOT NULL,
    batch_id       text        NOT NULL,
    chunk          integer     NOT NULL,
    contact_id     text,
    distributed_at timestamptz,
    redemptions    integer     NOT NULL DEFAULT 0
);

CREATE INDEX codes_by_campaign ON codes (campaign_id, code);

-- Bulk code generation jobs (write side: the job's own bookkeeping, not a projection).
CREATE TABLE code_batches (
    id          text        PRIMARY KEY,
    campaign_id text        NOT NULL,
    requested   integer     NOT NULL,
    pattern     jsonb       NOT NULL,
    status      text        NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done', 'failed')),
    next_chunk  integer     NOT NULL DEFAULT 0,
    actor       text,
    error       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);

CREATE INDEX code_batches_running ON code_batches (created_at) WHERE status = 'running';
