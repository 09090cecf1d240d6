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
