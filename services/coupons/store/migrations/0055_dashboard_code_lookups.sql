-- The dashboard's codes table finds a campaign's codes by holder, and its campaign page lists
-- the campaign's code batches and Stripe mirrors, newest first.
CREATE INDEX codes_by_holder ON codes (campaign_id, contact_id, code) WHERE contact_id IS NOT NULL;
CREATE INDEX code_batches_by_campaign ON code_batches (campaign_id, created_at DESC);
CREATE INDEX stripe_mirror_jobs_by_campaign ON stripe_mirror_jobs (campaign_id, created_at DESC);
