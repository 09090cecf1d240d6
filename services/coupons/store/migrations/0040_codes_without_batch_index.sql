-- Every code a batch adds updates each index of `codes`. The index by batch, read only when a
-- job recounts its codes after a crash, cost about a tenth of the projection's time for a
-- million-code batch; the recount reads through the campaign's codes instead.
DROP INDEX codes_by_batch;
