"""Acquisitions beside the loop: a partition revoked and given back keeps its fold going (a
member dropped by its group and rejoining does not fold again); one not given back has its
acquisition cancelled; none takes its partition while it is revoked."""

import asyncio

import pytest

from services.coupons.writer.acquisitions import Acquisitions


class Folds:
    def __init__(self) -> None:
        self.begun: list[int] = []
        self.taken: list[int] = []
        self.release = asyncio.Event()
        self.acquisitions = Acquisitions(self.acquire)

    async def acquire(self, p: int) -> None:
        self.begun.append(p)
        await self.release.wait()  # the fold
        await self.acquisitions.held(p)
        self.taken.append(p)


async def test_a_partition_given_back_keeps_its_fold_and_one_not_given_back_is_cancelled() -> None:
    folds = Folds()
    await folds.acquisitions.assign([0, 1])
    await asyncio.sleep(0)
    folds.acquisitions.revoke([0, 1])  # the member was dropped: a rejoin follows
    folds.release.set()
    await asyncio.sleep(0.01)
    assert folds.taken == []  # folded, but held back while revoked

    await folds.acquisitions.assign([0])  # the rejoin gives 0 back, not 1
    await asyncio.wait(folds.acquisitions.waits(), timeout=1)
    assert folds.acquisitions.finished() == [0]
    assert folds.begun == [0, 1] and folds.taken == [0]  # no second fold of 0; 1 never taken
    assert folds.acquisitions.waits() == []


async def test_an_acquisition_error_reaches_the_loop() -> None:
    async def failing(p: int) -> None:
        raise RuntimeError(f"cannot acquire {p}")

    acquisitions = Acquisitions(failing)
    await acquisitions.assign([2])
    await asyncio.wait(acquisitions.waits(), timeout=1)
    with pytest.raises(RuntimeError, match="cannot acquire 2"):
        acquisitions.finished()
