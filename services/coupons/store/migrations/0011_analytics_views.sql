-- The analysts' contract (docs/analytics.md): views only ever gain columns, at the end.
CREATE SCHEMA analytics;

CREATE VIEW analytics.campaign_usage AS
SELECT campaign_id, issued, distributed, redeemed, reversed,
       redeemed - reversed AS active_redemptions,
       max_redemptions,
       max_redemptions - (redeemed - reversed) AS remaining,
       budget, budget_spent,
       budget - budget_spent AS budget_left
FROM public.usage_campaigns;

CREATE VIEW analytics.code_usage AS
SELECT campaign_id, code, c.distributed, c.redeemed, c.reversed,
       c.redeemed - c.reversed AS active_redemptions,
       u.per_code - (c.redeemed - c.reversed) AS remaining
FROM public.usage_codes c JOIN public.usage_campaigns u USING (campaign_id);

CREATE VIEW analytics.refusals AS
SELECT campaign_id, command_type, reason, refused FROM public.usage_refusals;

CREATE VIEW analytics.contact_coupons AS
SELECT contact_id, activity, campaign_id, code, channel, source_ref, redemption_id, order_ref,
       currency, amount, discount, total, refunded, occurred_at
FROM public.contact_coupons;

CREATE VIEW analytics.redemption_ledger AS
SELECT redemption_id, campaign_id, code, contact_id, order_ref, source, channel, source_ref,
       currency, amount, discount, total, refunded,
       CASE WHEN reversed_at IS NULL THEN total - refunded ELSE 0 END AS net_revenue,
       redeemed_at, reversed_at, reversal_reason
FROM public.ledger;

CREATE VIEW analytics.distributions AS
SELECT distribution_id, campaign_id, code, contact_id, channel, source_ref, distributed_at
FROM public.ledger_distributions;

-- Per campaign, UTC day, channel and source: distributions on that day, and redemptions made
-- on that day with their revenue as it stands now (reversed ones count in `reversals`).
CREATE VIEW analytics.campaign_attribution_daily AS
WITH d AS (
    SELECT campaign_id, (distributed_at AT TIME ZONE 'UTC')::date AS day, channel,
           coalesce(source_ref, '') AS source_ref, count(*) AS distributed
    FROM public.ledger_distributions GROUP BY 1, 2, 3, 4
), r AS (
    SELECT campaign_id, (redeemed_at AT TIME ZONE 'UTC')::date AS day, channel,
           coalesce(source_ref, '') AS source_ref,
           count(*) AS redeemed,
           count(DISTINCT contact_id) AS unique_contacts,
           count(reversed_at) AS reversals,
           sum(amount) FILTER (WHERE reversed_at IS NULL) AS gross_revenue,
           sum(discount) FILTER (WHERE reversed_at IS NULL) AS discount_given,
           sum(total - refunded) FILTER (WHERE reversed_at IS NULL) AS net_revenue,
           sum(refunded) FILTER (WHERE reversed_at IS NULL) AS refunded
    FROM public.ledger GROUP BY 1, 2, 3, 4
)
SELECT campaign_id, day, channel, nullif(source_ref, '') AS source_ref,
       coalesce(d.distributed, 0) AS distributed,
       coalesce(r.redeemed, 0) AS redeemed,
       coalesce(r.unique_contacts, 0) AS unique_contacts,
       CASE WHEN coalesce(d.distributed, 0) = 0 THEN NULL
            ELSE round(coalesce(r.redeemed, 0)::numeric / d.distributed, 4) END AS conversion_rate,
       coalesce(r.gross_revenue, 0) AS gross_revenue,
       coalesce(r.discount_given, 0) AS discount_given,
       coalesce(r.net_revenue, 0) AS net_revenue,
       coalesce(r.refunded, 0) AS refunded,
       coalesce(r.reversals, 0) AS reversals
FROM d FULL JOIN r USING (campaign_id, day, channel, source_ref);
