-- The Stripe reconciliation's runs and their findings (`coupons stripe reconcile`), so the
-- dashboard's Operations page shows the last one. Only the last runs are kept
-- (services/coupons/store/reconciliations.py, KEPT); a run's findings go with it.
CREATE TABLE stripe_reconciliations (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ran_at      timestamptz NOT NULL DEFAULT now(),
    since       timestamptz NOT NULL,  -- the period compared: [since, until)
    until       timestamptz NOT NULL,
    repair      boolean     NOT NULL,  -- run with --repair: missing invoices were recorded
    invoices    int         NOT NULL,  -- discounted paid invoices Stripe listed
    matched     int         NOT NULL
);

CREATE TABLE stripe_reconciliation_findings (
    reconciliation_id bigint  NOT NULL REFERENCES stripe_reconciliations (id) ON DELETE CASCADE,
    position          int     NOT NULL,
    order_ref         text    NOT NULL,
    kind              text    NOT NULL
                      CHECK (kind IN ('missing', 'extra', 'amount_mismatch', 'unattributed')),
    detail            text    NOT NULL,
    repaired          boolean NOT NULL,
    PRIMARY KEY (reconciliation_id, position)
);
