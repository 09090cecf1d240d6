-- Jobs that mirror a campaign to Stripe as a Coupon and one PromotionCode per code
-- (services/coupons/stripe/mirror.py). What is mirrored is in stripe_code_map, so a job
-- resumes where it stopped.
CREATE TABLE stripe_mirror_jobs (
    id          text        PRIMARY KEY,
    campaign_id text        NOT NULL,
    status      text        NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done', 'failed')),
    total       integer     NOT NULL,
    mirrored    integer     NOT NULL DEFAULT 0,
    coupon_id   text,
    error       text,
    actor       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);

CREATE INDEX stripe_mirror_jobs_running ON stripe_mirror_jobs (created_at) WHERE status = 'running';
CREATE UNIQUE INDEX stripe_mirror_one_running ON stripe_mirror_jobs (campaign_id)
    WHERE status = 'running';
CREATE INDEX stripe_code_map_by_campaign ON stripe_code_map (campaign_id, code);
