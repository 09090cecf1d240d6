"""The two-tier ledger: whatever was set, in either tier, reads back; a snapshot's segments
(the bytes a restart reads) rebuild the same map, collisions of the id hash included."""

import dataclasses
import pickle
import random
from datetime import UTC, datetime

import pytest

from contracts.money import AmountOff
from services.coupons.domain import ledger
from services.coupons.domain.campaign_state import Campaign
from services.coupons.domain.ledger import Ledger, Redemption, Segment
from services.coupons.writer import snapshot_codec
from services.coupons.writer.snapshot_codec import CorruptSnapshot


def through_a_snapshot(book: Ledger) -> Ledger:
    """What a restart reads: the ledger's segments as snapshot columns, read back."""
    return Ledger(tuple(Segment.of_columns(s.columns()) for s in book.segments() if s))


def compacted(book: Ledger) -> Ledger:
    """What a long fold makes of it when due (`long_folds`): its tiers merged into segments."""
    if not book.compactable():
        return book
    *steps, last = book.compacting()
    assert all(step is None for step in steps) and isinstance(last, Ledger)
    return last


def changed(r: Redemption, rng: random.Random) -> Redemption:
    if rng.random() < 0.5:
        return Redemption(r.contact_id, r.code, r.discount, True, r.refunds, r.refunded)
    refund = f"re{rng.randrange(10**6)}"
    return Redemption(r.contact_id, r.code, r.discount, r.reversed, r.refunds | {refund}, 7)


@pytest.mark.parametrize("seed", range(8))
def test_a_ledger_reads_back_what_was_set_across_snapshots_and_compactions(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ledger, "SEGMENT_ENTRIES", 7)
    if seed % 2:  # a hash of 4 values: every lookup meets collisions, across segments too
        real = ledger.id_hash
        monkeypatch.setattr(ledger, "id_hash", lambda rid: real(rid) % 4)
    rng = random.Random(seed)
    book, model = Ledger(), dict[str, Redemption]()
    for _ in range(6):
        for _ in range(rng.randrange(1, 60)):
            if model and rng.random() < 0.3:
                rid = rng.choice(sorted(model))
                entry = changed(model[rid], rng)
            else:
                rid = f"r{rng.randrange(10**9)}-é"
                entry = Redemption(f"c{rng.randrange(5)}", "CODE", rng.randrange(10**12))
            book, model[rid] = book.set(rid, entry), entry
        roll = rng.random()
        book = through_a_snapshot(book) if roll < 0.4 else compacted(book) if roll < 0.8 else book
        for rid, entry in model.items():
            assert book.get(rid) == entry and rid in book and book[rid] == entry
        assert dict(book.items()) == model
        assert "absent" not in book and book.get("absent") is None
    assert sorted(book.values(), key=repr) == sorted(model.values(), key=repr)


def test_a_campaign_with_a_ledger_goes_through_the_snapshot_codec() -> None:
    book = Ledger()
    for n in range(2_500):
        book = book.set(f"r{n}", Redemption(f"c{n % 10}", "CODE", n))
    book = book.set("r3", Redemption("c3", "CODE", 3, reversed=True))
    discount = AmountOff(amount_off=5, currency="EUR")
    state = Campaign(
        id="c", name="c", discount=discount, defined_at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    state = dataclasses.replace(state, ledger=book)
    decoder = snapshot_codec.StatesDecoder()
    for chunk in snapshot_codec.encode({"k": state}, {}):
        decoder.feed(chunk.body, chunk.checksum)
    read = decoder.finish()["k"]
    assert dict(read.ledger.items()) == dict(book.items())
    assert read.ledger["r3"].reversed and not read.ledger["r4"].reversed
    assert dataclasses.replace(read, ledger=Ledger()) == dataclasses.replace(state, ledger=Ledger())


def test_a_ledger_segment_that_does_not_decode_is_a_corrupt_snapshot() -> None:
    book = Ledger().set("r1", Redemption("c", "CODE", 1))
    [segment] = [s for s in book.segments() if s]
    hashes, *rest = segment.columns()
    body = pickle.dumps([("ledger", "k", "ledger", (hashes[:-3], *rest))])
    decoder = snapshot_codec.StatesDecoder()
    with pytest.raises(CorruptSnapshot):
        decoder.feed(body, snapshot_codec.Chunk("state", body).checksum)


def test_a_ledger_is_compacted_once_its_hot_map_holds_half_its_cold_entries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ledger, "SEGMENT_ENTRIES", 10)
    book = Ledger()
    for n in range(9):
        book = book.set(f"r{n}", Redemption("c", "CODE", n))
    assert not book.compactable()  # less than a segment
    book = compacted(book.set("r9", Redemption("c", "CODE", 9)))
    assert repr(book) == "Ledger(cold=10, hot=0)"
    for n in range(10, 14):
        book = book.set(f"r{n}", Redemption("c", "CODE", n))
    assert not book.compactable()  # 4 hot over 10 cold, and less than a segment
    monkeypatch.setattr(ledger, "SEGMENT_ENTRIES", 2)
    book = compacted(book.set("r14", Redemption("c", "CODE", 14)))
    assert repr(book) == "Ledger(cold=15, hot=0)"
    assert [book[f"r{n}"].discount for n in range(15)] == list(range(15))


def test_merging_a_ledger_lets_others_run_every_merge_step_entries() -> None:
    """A segment is not merged in one step: a long fold's loop turns every MERGE_STEP."""
    from services.coupons.domain import tiers

    book = Ledger()
    for n in range(5 * tiers.MERGE_STEP):
        book = book.set(f"r{n}", Redemption("c", "CODE", n))
    steps = list(book.compacting())
    assert steps.count(None) >= 5 and isinstance(steps[-1], Ledger)
    assert dict(steps[-1].items()) == dict(book.items())
