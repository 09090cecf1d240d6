-- `usage_codes` had a row for every code a batch added, a third of the database's work on a
-- million-code batch, though most codes are never used. A unique code now gets its row on
-- first use (its distribution or redemption); `analytics.code_usage` still has one row per
-- code of a campaign, the unused unique codes coming from `codes` with zeros, and the same
-- columns. `usage_codes` compares in byte order, as `codes` does since 0041, so the two join
-- on their keys; rows already there stay.
DROP VIEW analytics.code_usage;
ALTER TABLE usage_codes
    ALTER COLUMN campaign_id TYPE text COLLATE "C",
    ALTER COLUMN code TYPE text COLLATE "C";
CREATE VIEW analytics.code_usage AS
WITH counted AS (
    SELECT c.campaign_id, c.code,
           coalesce(u.distributed, 0) AS distributed,
           coalesce(u.redeemed, 0) AS redeemed,
           coalesce(u.reversed, 0) AS reversed
    FROM public.codes c
    LEFT JOIN public.usage_codes u ON u.campaign_id = c.campaign_id AND u.code = c.code
    UNION ALL  -- shared codes, which `codes` does not hold
    SELECT u.campaign_id, u.code, u.distributed, u.redeemed, u.reversed
    FROM public.usage_codes u
    WHERE NOT EXISTS (
        SELECT FROM public.codes c WHERE c.campaign_id = u.campaign_id AND c.code = u.code
    )
)
SELECT campaign_id, code, c.distributed, c.redeemed, c.reversed,
       c.redeemed - c.reversed AS active_redemptions,
       u.per_code - (c.redeemed - c.reversed) AS remaining
FROM counted c JOIN public.usage_campaigns u USING (campaign_id);
