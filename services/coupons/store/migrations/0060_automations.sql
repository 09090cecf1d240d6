-- Automations and broadcasts (issue 19): definitions (admin API), the runs the contacts
-- processor and the timer loop record when a trigger fires, the conversions that prove lift.
CREATE TABLE automations (
    id              text        PRIMARY KEY,
    definition      jsonb       NOT NULL,  -- contracts.automations.AutomationDefinition
    status          text        NOT NULL DEFAULT 'draft'
                    CHECK (status IN ('draft', 'active', 'paused', 'archived')),
    version         int         NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Every version: the audit trail.
CREATE TABLE automation_versions (
    automation_id text        NOT NULL REFERENCES automations (id),
    version       int         NOT NULL,
    definition    jsonb       NOT NULL,
    status        text        NOT NULL,
    actor         text,
    changed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (automation_id, version)
);

CREATE TABLE broadcasts (
    id           text        PRIMARY KEY,
    definition   jsonb       NOT NULL,  -- contracts.automations.BroadcastRequest
    status       text        NOT NULL DEFAULT 'scheduled'
                 CHECK (status IN ('scheduled', 'running', 'done', 'cancelled')),
    send_at      timestamptz NOT NULL,
    total        bigint,
    actor        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz
);
CREATE INDEX broadcasts_due ON broadcasts (send_at) WHERE status IN ('scheduled', 'running');

-- One row per trigger occurrence of an automation (or target of a broadcast) for a contact:
-- unique, so a redelivered event or a replayed timer records nothing twice.
CREATE TABLE automation_runs (
    id              text        PRIMARY KEY,   -- uuid5 of (source, contact, occurrence)
    source_kind     text        NOT NULL CHECK (source_kind IN ('automation', 'broadcast')),
    source_id       text        NOT NULL,
    source_version  int         NOT NULL,
    campaign_id     text        NOT NULL,
    contact_id      text        NOT NULL,
    occurrence      text        NOT NULL,
    cause           text        NOT NULL,      -- the event id, timer:<second>, segment change
    triggered_at    timestamptz NOT NULL,
    due_at          timestamptz NOT NULL,
    status          text        NOT NULL DEFAULT 'scheduled'
                    CHECK (status IN ('scheduled', 'sending', 'sent', 'held_out', 'refused')),
    reason          text,
    detail          text,
    claimed_at      timestamptz,
    decided_at      timestamptz,
    UNIQUE (source_id, contact_id, occurrence)
);
CREATE INDEX automation_runs_due ON automation_runs (due_at)
    WHERE status IN ('scheduled', 'sending');
CREATE INDEX automation_runs_by_contact ON automation_runs (contact_id, decided_at);
CREATE INDEX automation_runs_by_source ON automation_runs (source_id, status);

-- Conversions: contact events of a type some automation names as its conversion, kept for
-- the lift figures (paid invoices come from stripe_orders).
CREATE TABLE contact_conversions (
    event_id    text        PRIMARY KEY,
    contact_id  text        NOT NULL,
    event_type  text        NOT NULL,
    occurred_at timestamptz NOT NULL,
    amount      bigint      NOT NULL DEFAULT 0
);
CREATE INDEX contact_conversions_by_contact ON contact_conversions (contact_id, occurred_at);
CREATE INDEX stripe_orders_by_contact ON stripe_orders (contact_id, paid_at);

-- For analysts (docs/analytics.md, "Automations"): every run with the code it gave, and each
-- contact's arm per automation or broadcast (treated or control, from its first such run).
CREATE VIEW analytics.automation_runs AS
    SELECT r.source_kind, r.source_id, r.source_version, r.campaign_id, r.contact_id,
           r.occurrence, r.cause, r.triggered_at, r.due_at, r.status, r.reason, r.detail,
           r.decided_at, d.code, d.channel, d.source_ref
    FROM automation_runs r LEFT JOIN distributions d ON d.distribution_id = r.id;

CREATE VIEW analytics.automation_arms AS
    SELECT source_id, contact_id,
           CASE (array_agg(status ORDER BY triggered_at, id))[1]
                WHEN 'sent' THEN 'treated' ELSE 'control' END AS arm,
           min(triggered_at) AS t0
    FROM automation_runs WHERE status IN ('sent', 'held_out')
    GROUP BY source_id, contact_id;
