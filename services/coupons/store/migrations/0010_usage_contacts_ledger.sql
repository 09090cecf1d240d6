-- Read models for analysts: usage and limits (projection "usage"), the contact graph
-- (projection "contacts") and the redemption ledger with its attribution (projection "ledger").
-- Each projection owns its tables and its rows in projection_offsets; none reads another's.

CREATE TABLE usage_campaigns (
    campaign_id     text   PRIMARY KEY,
    max_redemptions bigint,
    per_code        bigint,
    budget          bigint,
    issued          bigint NOT NULL DEFAULT 0,
    distributed     bigint NOT NULL DEFAULT 0,
    redeemed        bigint NOT NULL DEFAULT 0,
    reversed        bigint NOT NULL DEFAULT 0,
    budget_spent    bigint NOT NULL DEFAULT 0
);

CREATE TABLE usage_codes (
    campaign_id text   NOT NULL,
    code        text   NOT NULL,
    distributed bigint NOT NULL DEFAULT 0,
    redeemed    bigint NOT NULL DEFAULT 0,
    reversed    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, code)
);

CREATE TABLE usage_refusals (
    campaign_id  text   NOT NULL,
    command_type text   NOT NULL,
    reason       text   NOT NULL,
    refused      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, command_type, reason)
);

-- Which code a redemption used, so its reversal lands on the right code.
CREATE TABLE usage_redemptions (
    redemption_id text PRIMARY KEY,
    code          text NOT NULL
);

-- One row per thing that happened to a contact's coupon.
CREATE TABLE contact_coupons (
    event_id      uuid        PRIMARY KEY,
    contact_id    text        NOT NULL,
    activity      text        NOT NULL,
    campaign_id   text        NOT NULL,
    code          text        NOT NULL,
    channel       text,
    source_ref    text,
    redemption_id text,
    order_ref     text,
    currency      text,
    amount        bigint,
    discount      bigint,
    total         bigint,
    refunded      bigint,
    occurred_at   timestamptz NOT NULL
);

CREATE INDEX contact_coupons_by_contact ON contact_coupons (contact_id, occurred_at);
CREATE INDEX contact_coupons_by_redemption ON contact_coupons (redemption_id)
    WHERE activity = 'redeemed';

CREATE TABLE ledger_distributions (
    distribution_id text        PRIMARY KEY,
    campaign_id     text        NOT NULL,
    code            text        NOT NULL,
    contact_id      text        NOT NULL,
    channel         text        NOT NULL,
    source_ref      text,
    distributed_at  timestamptz NOT NULL
);

CREATE INDEX ledger_distributions_by_campaign ON ledger_distributions (campaign_id, distributed_at);
CREATE INDEX ledger_distributions_by_code ON ledger_distributions (code, contact_id, distributed_at);

CREATE TABLE ledger (
    redemption_id   text        PRIMARY KEY,
    campaign_id     text        NOT NULL,
    code            text        NOT NULL,
    contact_id      text        NOT NULL,
    order_ref       text        NOT NULL,
    source          text        NOT NULL,
    channel         text        NOT NULL,
    source_ref      text,
    currency        text        NOT NULL,
    amount          bigint      NOT NULL,
    discount        bigint      NOT NULL,
    total           bigint      NOT NULL,
    refunded        bigint      NOT NULL DEFAULT 0,
    redeemed_at     timestamptz NOT NULL,
    reversed_at     timestamptz,
    reversal_reason text
);

CREATE INDEX ledger_by_campaign ON ledger (campaign_id, redeemed_at);
CREATE INDEX ledger_by_time ON ledger (redeemed_at);
