-- Snapshots of a writer's partition state (services/coupons/writer/snapshots.py): the state
-- folded from event partition (topic, partition) up to, not including, next_offset, with the
-- next command offset it had consumed and the version (shape) of the code that wrote it. Its
-- bytes are in chunks, each with its own SHA-256; a snapshot's row is written after its
-- chunks, so a snapshot without its row (a writer killed while writing) is never read, and
-- is deleted by the next one written for that partition. Two are kept per partition: a
-- corrupt latest one falls back on the one before.
CREATE SEQUENCE state_snapshot_ids;

CREATE TABLE state_snapshots (
    id           bigint  PRIMARY KEY,
    topic        text    NOT NULL,
    partition    integer NOT NULL,
    next_offset  bigint  NOT NULL,
    consumed     bigint  NOT NULL,
    version      text    NOT NULL,
    state_chunks integer NOT NULL,
    memo_chunks  integer NOT NULL,
    bytes        bigint  NOT NULL,
    written_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX state_snapshots_latest ON state_snapshots (topic, partition, next_offset DESC);

CREATE TABLE state_snapshot_chunks (
    snapshot_id bigint  NOT NULL,
    topic       text    NOT NULL,
    partition   integer NOT NULL,
    kind        text    NOT NULL CHECK (kind IN ('state', 'memo')),
    seq         integer NOT NULL,
    checksum    bytea   NOT NULL,
    body        bytea   NOT NULL,
    PRIMARY KEY (snapshot_id, seq)
);
CREATE INDEX state_snapshot_chunks_of ON state_snapshot_chunks (topic, partition, snapshot_id);
