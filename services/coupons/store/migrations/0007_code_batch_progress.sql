-- A code batch records its progress itself, instead of counting its codes on every chunk.
ALTER TABLE code_batches ADD COLUMN generated integer NOT NULL DEFAULT 0;

CREATE INDEX codes_by_batch ON codes (batch_id);
