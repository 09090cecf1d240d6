"""What a fold builds lives as long as the state it is part of: kept out of the cycle
collector's passes, so that a long fold does not hold the event loop in them.

Python's collector moves what survives a young collection into the middle generation, which
is scanned whole after every 50 young collections (`runtime._collect_garbage_less_often`'s
thresholds). A fold of a long log keeps nearly everything it allocates (the ledger's map
nodes, the memo's decisions), so that generation fills with millions of objects and each of its
collections scans them all: measured, 4 s of CPU per such collection once it held 2.5 million
objects, 20 to 40 s of wall time on the loaded machine, longer than the consumer group's session
(6 s), which then dropped the decider (docs/performance/resilience.md, "A first start's lost
membership"). `gc.freeze()` moves every tracked object into the permanent generation, in
constant time, and none is scanned again; so a fold freezes what it built every
`FREEZE_EVERY` events, and the collector's passes stay as short as on an empty log.

The cost: a reference cycle that is garbage at the moment of a freeze is never collected (its
memory is kept). The freezes happen only while a state is folded from the log, not while it is
live, so that is bounded by the folds' own few cycles, not by the process's running time.
"""

import gc

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


def folded(events: int) -> None:
    """`events` more folded into a long-lived state (its first fold, not the live updates)."""
    _FREEZER.folded(events)
