-- `codes` had two B-trees: its key (code) and (campaign_id, code), for a campaign's pages.
-- Every code a batch adds entered both, the largest share of the database's work on a
-- million-code batch. The registry (`code_claims`, keyed by code) already keeps one code to
-- one campaign, and every reader and writer of `codes` knows the campaign, so (campaign_id,
-- code) alone is the key.
ALTER TABLE codes DROP CONSTRAINT codes_pkey;
DROP INDEX codes_by_campaign;
ALTER TABLE codes ADD PRIMARY KEY (campaign_id, code);
