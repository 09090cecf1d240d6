-- Contacts and segments (issue 18): written by the contacts processor, the timer loop and the
-- backfill runner (services/coupons/contacts/), not by the projection runner.
ALTER TABLE api_keys DROP CONSTRAINT api_keys_scope_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_scope_check
    CHECK (scope IN ('admin', 'checkout', 'analyst', 'ingest'));

CREATE TABLE contact_profiles (
    contact_id text        PRIMARY KEY,
    email      text,
    profile    jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX contact_profiles_by_email ON contact_profiles (lower(email));

-- Event ids applied, for dedupe (the same id five times has the effect of one).
CREATE TABLE contact_event_ids (
    event_id   text        PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE segments (
    id         text        PRIMARY KEY,
    name       text        NOT NULL,
    kind       text        NOT NULL CHECK (kind IN ('live', 'static')),
    condition  jsonb,
    version    int         NOT NULL DEFAULT 1,
    status     text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'archived')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Every version of a segment: the audit trail of its changes.
CREATE TABLE segment_versions (
    segment_id text        NOT NULL REFERENCES segments (id),
    version    int         NOT NULL,
    condition  jsonb,
    status     text        NOT NULL,
    actor      text,
    changed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (segment_id, version)
);

CREATE TABLE segment_members (
    segment_id text        NOT NULL,
    contact_id text        NOT NULL,
    version    int         NOT NULL,
    since      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (segment_id, contact_id)
);
CREATE INDEX segment_members_by_contact ON segment_members (contact_id);

-- One durable timer per contact: the next second time alone can change a membership.
CREATE TABLE contact_timers (
    contact_id text   PRIMARY KEY,
    due_at     bigint NOT NULL
);
CREATE INDEX contact_timers_by_due ON contact_timers (due_at);

-- Entered/left messages, written with the membership change, published by the relay.
CREATE TABLE segment_outbox (
    seq        bigserial PRIMARY KEY,
    contact_id text      NOT NULL,
    message    jsonb     NOT NULL
);

-- Backfill of a new or changed segment over existing profiles: a cursor, resumable.
CREATE TABLE segment_backfills (
    segment_id text        NOT NULL,
    version    int         NOT NULL,
    after      text        NOT NULL DEFAULT '',
    done       bigint      NOT NULL DEFAULT 0,
    total      bigint      NOT NULL DEFAULT 0,
    finished   boolean     NOT NULL DEFAULT false,
    started_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (segment_id, version)
);
