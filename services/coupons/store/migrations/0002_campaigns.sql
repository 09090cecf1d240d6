-- The campaigns read model (projection "campaigns").
CREATE TABLE campaigns (
    id             text        PRIMARY KEY,
    name           text        NOT NULL,
    discount       jsonb       NOT NULL,
    defined_at     timestamptz NOT NULL,
    defined_by     text,
    correlation_id text        NOT NULL,
    event_id       uuid        NOT NULL UNIQUE
);

CREATE INDEX campaigns_by_defined_at ON campaigns (defined_at DESC, id DESC);
