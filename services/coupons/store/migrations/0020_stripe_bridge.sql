-- The Stripe bridge's own state (services/coupons/stripe/translator.py), written in the same
-- transaction as its consumed offsets of the stripe-events topic (projection_offsets, under
-- the name "stripe-translator"). Not a projection of the event log: it is the bridge's memory.

-- Every Stripe event the translator has handled, whatever its type: a redelivery is skipped.
CREATE TABLE stripe_events (
    event_id    text        PRIMARY KEY,
    type        text        NOT NULL,
    outcome     text        NOT NULL,
    handled_at  timestamptz NOT NULL DEFAULT now()
);

-- Paid invoices (and checkout sessions without an invoice) that carried a discount.
CREATE TABLE stripe_orders (
    order_ref      text        PRIMARY KEY,
    currency       text        NOT NULL,
    amount_paid    bigint      NOT NULL,
    customer_id    text,
    contact_id     text        NOT NULL,
    charge_id      text,
    payment_intent text,
    refunded       bigint      NOT NULL DEFAULT 0,
    charge_refunded bigint     NOT NULL DEFAULT 0,
    reversed       boolean     NOT NULL DEFAULT false,
    paid_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX stripe_orders_by_charge ON stripe_orders (charge_id) WHERE charge_id IS NOT NULL;
CREATE INDEX stripe_orders_by_intent ON stripe_orders (payment_intent)
    WHERE payment_intent IS NOT NULL;

-- One row per discount of an order: the redemption it became, or why it is unattributed.
CREATE TABLE stripe_redemptions (
    order_ref     text        NOT NULL REFERENCES stripe_orders (order_ref),
    discount_key  text        NOT NULL,
    redemption_id text        NOT NULL UNIQUE,
    campaign_id   text,
    code          text,
    amount        bigint      NOT NULL,
    discount      bigint      NOT NULL,
    total         bigint      NOT NULL,
    refunded      bigint      NOT NULL DEFAULT 0,
    unattributed  text,
    detail        text,
    PRIMARY KEY (order_ref, discount_key)
);

CREATE INDEX stripe_unattributed ON stripe_redemptions (order_ref) WHERE unattributed IS NOT NULL;

-- Refunds and credit notes whose payment is not known yet: applied when it is.
CREATE TABLE stripe_held_refunds (
    refund_id      text        PRIMARY KEY,
    invoice_id     text,
    charge_id      text,
    payment_intent text,
    fact           jsonb       NOT NULL,
    held_at        timestamptz NOT NULL DEFAULT now()
);

-- Every refund counted against an order, with the part of it that was new.
CREATE TABLE stripe_refunds (
    refund_id  text        PRIMARY KEY,
    order_ref  text        NOT NULL REFERENCES stripe_orders (order_ref),
    amount     bigint      NOT NULL,
    counted_at timestamptz NOT NULL DEFAULT now()
);

-- Which invoice a charge or payment intent paid (invoice_payment.paid, API 2025-03-31 on).
CREATE TABLE stripe_payment_links (
    payment_ref text PRIMARY KEY,
    invoice_id  text NOT NULL
);

-- Discount objects seen whole (customer.discount.*), to resolve discount ids on invoices.
CREATE TABLE stripe_discounts (
    discount_id text  PRIMARY KEY,
    discount    jsonb NOT NULL
);

-- Stripe coupons and promotion codes that stand for a campaign (and code) of ours.
CREATE TABLE stripe_code_map (
    stripe_id   text PRIMARY KEY,
    campaign_id text NOT NULL,
    code        text
);

-- The bridge finds a paying customer's contact by the email a code was distributed to.
CREATE INDEX distributions_by_email ON distributions (lower(email), distributed_at);
