-- Campaign rules, status and usage; the redemption ledger; shared-code claims.
ALTER TABLE campaigns
    ADD COLUMN code         text,
    ADD COLUMN status       text   NOT NULL DEFAULT 'active',
    ADD COLUMN rules        jsonb  NOT NULL DEFAULT '{}',
    ADD COLUMN redemptions  bigint NOT NULL DEFAULT 0,
    ADD COLUMN budget_spent bigint NOT NULL DEFAULT 0,
    ADD COLUMN updated_at   timestamptz;

CREATE INDEX campaigns_by_code ON campaigns (code);

-- One row per redemption (projection "campaigns"); reversal marks it, never deletes it.
CREATE TABLE redemptions (
    redemption_id   text        PRIMARY KEY,
    campaign_id     text        NOT NULL,
    code            text        NOT NULL,
    contact_id      text        NOT NULL,
    order_ref       text        NOT NULL,
    currency        text        NOT NULL,
    amount          bigint      NOT NULL,
    discount        bigint      NOT NULL,
    total           bigint      NOT NULL,
    redeemed_at     timestamptz NOT NULL,
    correlation_id  text        NOT NULL,
    reversed_at     timestamptz,
    reversal_reason text
);

CREATE INDEX redemptions_by_contact ON redemptions (campaign_id, contact_id)
    WHERE reversed_at IS NULL;

-- Write side, not a projection: the guard that one code string names one campaign, ever.
-- The API claims a shared code here before it sends the DefineCampaign command.
CREATE TABLE code_claims (
    code        text        PRIMARY KEY,
    campaign_id text        NOT NULL,
    claimed_at  timestamptz NOT NULL DEFAULT now()
);
