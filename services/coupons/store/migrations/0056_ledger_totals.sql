-- Attribution summed as the ledger changes (projection "ledger"), so the dashboard's pages do
-- not sum a campaign's redemptions on every view: per campaign, UTC day, channel and source
-- (`ledger_daily`, the figures of analytics.campaign_attribution_daily but unique contacts),
-- and per campaign (`ledger_campaigns`). Kept in the ledger projection's transaction, from
-- the same rows, so they always equal the sums of `ledger` and `ledger_distributions`.
CREATE TABLE ledger_daily (
    campaign_id    text   NOT NULL,
    day            date   NOT NULL,
    channel        text   NOT NULL,
    source_ref     text   NOT NULL, -- '' for none
    distributed    bigint NOT NULL DEFAULT 0,
    redeemed       bigint NOT NULL DEFAULT 0,
    reversals      bigint NOT NULL DEFAULT 0,
    gross_revenue  bigint NOT NULL DEFAULT 0,
    discount_given bigint NOT NULL DEFAULT 0,
    net_revenue    bigint NOT NULL DEFAULT 0,
    refunded       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, day, channel, source_ref)
);

CREATE TABLE ledger_campaigns (
    campaign_id    text   PRIMARY KEY,
    distributed    bigint NOT NULL DEFAULT 0,
    redeemed       bigint NOT NULL DEFAULT 0,
    reversals      bigint NOT NULL DEFAULT 0,
    gross_revenue  bigint NOT NULL DEFAULT 0,
    discount_given bigint NOT NULL DEFAULT 0,
    net_revenue    bigint NOT NULL DEFAULT 0,
    refunded       bigint NOT NULL DEFAULT 0
);

INSERT INTO ledger_daily
SELECT campaign_id, day, channel, coalesce(source_ref, ''), distributed, redeemed, reversals,
       coalesce(gross_revenue, 0), coalesce(discount_given, 0), coalesce(net_revenue, 0),
       coalesce(refunded, 0)
FROM analytics.campaign_attribution_daily;

INSERT INTO ledger_campaigns
SELECT campaign_id, sum(distributed), sum(redeemed), sum(reversals), sum(gross_revenue),
       sum(discount_given), sum(net_revenue), sum(refunded)
FROM ledger_daily GROUP BY campaign_id;
