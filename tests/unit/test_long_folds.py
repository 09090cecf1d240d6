"""A fold's objects are frozen out of the cycle collector every `FREEZE_EVERY` events, so a
long fold never makes the collector scan what it built (`services.coupons.long_folds`)."""

import gc

import pytest

from services.coupons import long_folds


async def test_what_a_long_fold_built_is_frozen_out_of_the_collections(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(long_folds, "_FREEZER", long_folds._Freezer())
    frozen = gc.get_freeze_count()
    built = [[n] for n in range(1_000)]  # what a fold keeps: tracked containers
    await long_folds.sliced(long_folds.FREEZE_EVERY - 1)
    assert gc.get_freeze_count() == frozen  # not yet
    await long_folds.sliced(1)
    assert gc.get_freeze_count() >= frozen + len(built)
    scanned = {id(o) for o in gc.get_objects()}  # every generation a collection scans
    assert not any(id(b) in scanned for b in built)


async def test_a_fold_compacts_its_ledgers_and_memo_every_compact_every_events(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a long fold built is turned into segments as it goes (equal to what it was), so a
    first start holds about what a restart reads back."""
    from datetime import UTC, datetime

    from contracts.money import AmountOff
    from services.coupons.domain import ledger, memo_bucket
    from services.coupons.domain.campaign_state import Campaign
    from services.coupons.domain.idempotency import Memo
    from services.coupons.domain.ledger import Ledger, Redemption

    monkeypatch.setattr(ledger, "SEGMENT_ENTRIES", 4)
    monkeypatch.setattr(memo_bucket, "SEGMENT_ENTRIES", 4)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    book = Ledger()
    for n in range(10):
        book = book.set(f"r{n}", Redemption(f"c{n % 3}", "CODE", n))
    campaign = Campaign("c1", "one", AmountOff(amount_off=500, currency="EUR"), at, ledger=book)
    states: dict[str, object] = {"c1": campaign, "other": "not a dataclass"}
    memo = Memo(window_s=3600)

    class Message:
        key, request_hash, data, occurred_at = "c1", "a" * 64, None, at

        def __init__(self, n: int) -> None:
            self.idempotency_key = f"k{n}"

    for n in range(10):
        memo.begin(Message(n), "a" * 64, [], at)  # type: ignore[arg-type]
    before = [memo.get(Message(n)) for n in range(10)]  # type: ignore[arg-type]
    long_fold = long_folds.LongFold()
    await long_fold.folded(long_folds.COMPACT_EVERY - 1, states, memo)
    assert repr(states["c1"].ledger) == "Ledger(cold=0, hot=10)"  # type: ignore[attr-defined]
    await long_fold.folded(1, states, memo)
    compact = states["c1"]
    assert isinstance(compact, Campaign) and repr(compact.ledger) == "Ledger(cold=10, hot=0)"
    assert compact == campaign and states["other"] == "not a dataclass"
    assert [memo.get(Message(n)) for n in range(10)] == before  # type: ignore[arg-type]
    assert [repr(b) for b in memo.buckets().values()] == ["Bucket(cold=10, hot=0)"]
