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
"""

import asyncio
import gc

SLICE = 500
"""Events folded between two turns of the loop."""
FREEZE_EVERY = 20_000
"""Events folded between two freezes: about a young collection's worth of survivors."""


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
