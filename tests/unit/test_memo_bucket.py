"""The memo's two-tier buckets: whatever was set, deleted or read back from a snapshot's columns
answers as a dict would, slots sharing their 8-byte prefix (across segments too) included; and
a memo restored from a snapshot answers a retry with its first outcome."""

from datetime import UTC, datetime
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.reasons import Reason
from contracts.replies import EventPosition
from services.coupons.domain import memo_bucket
from services.coupons.domain.memo_bucket import Bucket, Decided, DecidedSegment
from services.coupons.writer import snapshot_codec
from services.coupons.writer.snapshot_codec import CorruptSnapshot

# Twelve slots: three prefixes of 8 bytes shared by four slots each, so lookups meet
# prefix collisions, and segments of 2 entries are forced to keep them together.
SLOTS = [bytes([p]) * 8 + bytes([s]) * 8 for p in (1, 2, 3) for s in range(4)]
REFUSAL = (Reason.EXHAUSTED, "the campaign's limit is reached")

decisions = st.builds(
    Decided,
    request_hash=st.binary(min_size=16, max_size=16),
    refused=st.sampled_from([None, REFUSAL]),
    positions=st.lists(st.integers(0, 2**40), max_size=6).map(tuple),
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.sampled_from(SLOTS), decisions),
        st.tuples(st.just("delete"), st.sampled_from(SLOTS), st.none()),
        st.tuples(st.just("snapshot"), st.none(), st.none()),
        st.tuples(st.just("compact"), st.booleans(), st.none()),
    ),
    max_size=60,
)


def through_a_snapshot(bucket: Bucket) -> Bucket:
    """What a restart reads: the bucket's segments as snapshot columns, read back."""
    cold = (DecidedSegment.of_columns(s.columns()) for s in bucket.segments() if s is not None)
    return Bucket(tuple(cold))


@settings(max_examples=300, deadline=None)
@given(operations)
def test_a_bucket_answers_as_a_dict_across_snapshots(
    steps: list[tuple[str, bytes, Decided]],
) -> None:
    with patch.object(memo_bucket, "SEGMENT_ENTRIES", 2):
        bucket, model, committed = Bucket(), dict[bytes, Decided](), dict[bytes, Decided]()
        for op, slot, decided in steps:
            if op == "set":
                bucket, model[slot] = bucket.set(slot, decided), decided
            elif op == "delete":  # only what was set since the last snapshot goes
                bucket = bucket.delete(slot)
                if slot in committed:
                    model[slot] = committed[slot]
                else:
                    model.pop(slot, None)
            elif op == "compact":  # a long fold's: then all of it is cold, as after a snapshot
                if bucket.compactable(settled=bool(slot)):
                    *_, last = bucket.compacting()
                    assert isinstance(last, Bucket) and last.has_cold
                    bucket = last
                    committed = dict(model)
            else:
                bucket, committed = through_a_snapshot(bucket), dict(model)
            assert all(bucket.get(s) == model.get(s) for s in SLOTS)
            assert len(bucket) == len(model)
            assert list(bucket.items()) == sorted(model.items())


def test_a_memo_chunk_that_does_not_decode_is_a_corrupt_snapshot() -> None:
    bucket = Bucket().set(SLOTS[0], Decided(b"h" * 16, None, (0, 1)))
    [segment] = [s for s in bucket.segments() if s is not None]
    prefixes, ends, positions, slots, hashes, refused = segment.columns()
    for columns in [
        (prefixes, ends, positions, slots[:-1], hashes, refused),  # a slot cut short
        (prefixes, ends, positions[:-8], slots, hashes, refused),  # a position missing
        (prefixes[:-3], ends, positions, slots, hashes, refused),  # not whole integers
    ]:
        chunk = snapshot_codec.Chunk("memo", snapshot_codec.pickle.dumps((5, columns)))
        with pytest.raises(CorruptSnapshot):
            snapshot_codec.MemoDecoder().feed(chunk.body, chunk.checksum)


def test_a_decision_read_from_a_snapshot_takes_its_next_position_in_the_hot_map() -> None:
    first = Decided(b"h" * 16, None, (0, 7))
    restored = through_a_snapshot(Bucket().set(SLOTS[0], first))
    placed = restored.set(SLOTS[0], first.at(EventPosition(partition=0, offset=8)))
    assert placed.get(SLOTS[0]) == Decided(b"h" * 16, None, (0, 7, 0, 8))
    assert restored.get(SLOTS[0]) == first  # immutable: the restored bucket is unchanged
    assert len(placed) == 1
    assert list(through_a_snapshot(placed).items()) == [(SLOTS[0], placed.get(SLOTS[0]))]


def test_a_slot_or_hash_not_16_bytes_is_refused_when_a_segment_is_built() -> None:
    with pytest.raises(ValueError):
        DecidedSegment.build([(b"short", Decided(b"h" * 16))])


def test_restored_buckets_expire_whole() -> None:
    """A memo restored from a snapshot drops a restored bucket once it is past the window."""
    from services.coupons.domain.idempotency import Memo

    memo = Memo(window_s=3600)
    bucket = through_a_snapshot(Bucket().set(SLOTS[0], Decided(b"h" * 16)))
    now = datetime(2026, 1, 1, tzinfo=UTC)
    number = int(now.timestamp() // (3600 / 24))
    memo.restore({number: bucket})
    assert len(memo) == 1
    assert memo.expire(now) == 0
    assert memo.expire(datetime.fromtimestamp(now.timestamp() + 3600 + 151, UTC)) == 1
    assert len(memo) == 0


class _Message:
    """What the memo reads of a command or an event: its key, idempotency key, request hash,
    data and time."""

    def __init__(self, key: str, digest: str, at: datetime) -> None:
        self.key, self.idempotency_key, self.request_hash = "campaign", key, digest
        self.data, self.occurred_at = None, at


T0 = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
steps_of_a_memo = st.lists(
    st.tuples(
        st.sampled_from(["begin", "place", "replay", "expire", "snapshot", "compact"]),
        st.sampled_from([f"k{n}" for n in range(6)]),
        st.sampled_from(["a" * 64, "b" * 64]),
        st.sampled_from([0, 100, 200, 400, 800, 3000, 4000, 7000]),
        st.integers(0, 99),
    ),
    max_size=50,
)


@settings(max_examples=300, deadline=None)
@given(steps_of_a_memo)
def test_a_memo_through_snapshots_and_compactions_answers_as_one_never_snapshotted(
    steps: list[tuple[str, str, str, int, int]],
) -> None:
    """The same decisions, positions and expiries on two memos, one of them written to a
    snapshot and restored from it, or compacted as a long fold does, now and then: every key
    answers the same."""
    from services.coupons.domain.idempotency import Memo

    def through_the_codec(memo: Memo) -> Memo:
        decoder = snapshot_codec.MemoDecoder()
        for chunk in snapshot_codec.encode({}, memo.buckets()):
            decoder.feed(chunk.body, chunk.checksum)
        restored = Memo(window_s=3600)
        restored.restore(decoder.finish())
        return restored

    with patch.object(memo_bucket, "SEGMENT_ENTRIES", 2):
        memo, never = Memo(window_s=3600), Memo(window_s=3600)
        for op, key, digest, seconds, offset in steps:
            message = _Message(key, digest, datetime.fromtimestamp(T0 + seconds, UTC))
            position = EventPosition(partition=0, offset=offset)
            for each in (memo, never):
                if op == "begin":
                    each.begin(message, digest, [], message.occurred_at)  # type: ignore[arg-type]
                elif op == "place":
                    each.place(message, position)  # type: ignore[arg-type]
                elif op == "replay":
                    each.replay(message, position)  # type: ignore[arg-type]
                elif op == "expire":
                    each.expire(message.occurred_at)
            if op == "snapshot":
                memo = through_the_codec(memo)
            elif op == "compact":  # a long fold's, between two slices
                assert all(step is None for step in memo.compaction())
            for n in range(6):
                probe = _Message(f"k{n}", "", message.occurred_at)
                assert memo.get(probe) == never.get(probe)  # type: ignore[arg-type]
            assert len(memo) == len(never)
