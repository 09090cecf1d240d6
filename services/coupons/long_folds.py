"""How a long fold (a state folded from the log at a start or a rebalance: a decider's
partition, the campaign view) shares its process: it yields to the event loop every `SLICE`
events, and keeps what it built out of the cycle collector's passes. Both hold the loop
otherwise, for longer than a consumer group's session (6 s) on a long log and a loaded
machine, and the group then drops the member and its partitions are folded again
(docs/performance/resilience.md, "A first start's lost membership").

**The loop.** Every fold of a process runs on its loop beside the consumer groups'
heartbeats: a heartbeat waits for one slice of each fold (and of everything else ready). A
slice of a whole fetch (2,000 to 5,000 events) took 0.1 to 0.15 s of CPU, 0.5 to 0.75 s of
wall time at a load of 10 on 2 cores, and seven folds (six partitions and the view) then took
5 s per turn of the loop. `SLICE` events take about 25 ms of CPU.

**The collector.** Python's collector moves what survives a young collection into the middle
generation, scanned whole after every 50 young collections (`runtime`'s thresholds). A fold
keeps nearly everything it allocates (the ledger's map nodes, the memo's decisions), so that
generation fills with millions of objects: measured, 1.1 s of CPU to collect 660,000 of them,
about 4 s for the 2.5 million it holds at the most. `gc.freeze()` moves every tracked object
into the permanent generation, in constant time, never scanned again; a fold freezes what it
built every `FREEZE_EVERY` events. The cost: a reference cycle that is garbage at the moment
of a freeze is never collected; the freezes happen only while a state is folded from the log,
not while it is live, so that is bounded by the folds' own few cycles, not by running time.

**Compact as it goes.** What a fold builds is hot: persistent maps, about five times the bytes
of the same entries read back from a snapshot as flat segments. A first start (no sound
snapshot) of five million redemptions held 4.2 GiB where a restart holds about a fifth. So
every `COMPACT_EVERY` events a fold turns each ledger and memo bucket whose hot map has grown
(`tiers.due`) into segments (`LongFold`), a step at a time between turns of the loop: the
state is then what a restart would read back, less the hot part still growing.
"""

import asyncio
import dataclasses
import gc
from collections.abc import Iterator
from typing import Any

from services.coupons.domain.idempotency import Memo
from services.coupons.domain.ledger import Ledger

SLICE = 500
"""Events folded between two turns of the loop."""
FREEZE_EVERY = 20_000
"""Events folded between two freezes: about a young collection's worth of survivors."""
COMPACT_EVERY = 50_000
"""Events folded by one fold between two looks for a ledger or memo bucket to compact."""


class _Freezer:
    def __init__(self) -> None:
        self.since = 0

    def folded(self, events: int) -> None:
        self.since += events
        if self.since >= FREEZE_EVERY:
            self.since = 0
            gc.freeze()


_FREEZER = _Freezer()  # one per process, as the collector is


async def sliced(events: int) -> None:
    """Call after each `SLICE` events (or fewer) folded into a state that stays: freezes when
    due, then lets the loop run."""
    _FREEZER.folded(events)
    await asyncio.sleep(0)


def compaction(states: dict[str, Any], memo: Memo | None = None) -> Iterator[None]:
    """Compact each state's ledgers (fields of a dataclass state) and the memo's buckets that
    are due, a step at a time (None after each); each state is replaced in `states` by one
    with the compacted ledger, equal to it. Nothing else may change them meanwhile."""
    for key in list(states):
        state = states[key]
        if not dataclasses.is_dataclass(state) or isinstance(state, type):
            continue
        for field in dataclasses.fields(state):
            ledger = getattr(state, field.name)
            if not (isinstance(ledger, Ledger) and ledger.compactable()):
                continue
            for step in ledger.compacting():
                if step is None:
                    yield None
                else:
                    state = dataclasses.replace(state, **{field.name: step})
            states[key] = state
    if memo is not None:
        yield from memo.compaction()


class LongFold:
    """What a long fold does between slices: every `SLICE` events (or fewer), `sliced`; every
    `COMPACT_EVERY` events, the compactions due."""

    def __init__(self) -> None:
        self.since = 0

    async def folded(self, events: int, states: dict[str, Any], memo: Memo | None = None) -> None:
        """Call after `events` more were folded into `states` (and `memo`)."""
        await sliced(events)
        self.since += events
        if self.since < COMPACT_EVERY:
            return
        self.since = 0
        for _ in compaction(states, memo):
            await asyncio.sleep(0)
