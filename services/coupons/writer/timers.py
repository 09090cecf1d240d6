"""A partition's durable timers: commands an aggregate asks to have decided at a given instant
(a reservation released when it expires), without any request arriving.

Durable without being stored: they are derived from the state (`Aggregate.timers`), which is
folded from the log, so a writer that takes a partition over (after a crash, a rebalance)
finds them again. Each is refreshed whenever its aggregate instance's state changes. When one
is due, the writer decides its command like any other, in order, under an idempotency key of
the timer's own, so a timer fired twice (by two owners in a handover) has one effect; the
aggregate's `decide` tells a due timer from one whose work is done already.
"""

import heapq
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Timer:
    at: datetime
    id: str
    """Unique within its aggregate instance, stable for the same pending work."""
    command: Any


@dataclass
class Timers:
    _pending: dict[tuple[str, str], Timer] = field(default_factory=dict)  # (key, id) -> timer
    _by_key: dict[str, set[str]] = field(default_factory=dict)
    _heap: list[tuple[datetime, str, str]] = field(default_factory=list)  # (at, key, id)

    def refresh(self, key: str, timers: list[Timer]) -> None:
        """`key`'s pending timers are now exactly `timers`."""
        for stale in self._by_key.pop(key, set()) - {t.id for t in timers}:
            self._pending.pop((key, stale), None)
        for timer in timers:
            if self._pending.get((key, timer.id)) != timer:
                heapq.heappush(self._heap, (timer.at, key, timer.id))
            self._pending[key, timer.id] = timer
        if timers:
            self._by_key[key] = {t.id for t in timers}

    def next_at(self) -> datetime | None:
        """When the earliest pending timer is due."""
        while self._heap:
            at, key, timer_id = self._heap[0]
            timer = self._pending.get((key, timer_id))
            if timer is not None and timer.at == at:
                return at
            heapq.heappop(self._heap)  # refreshed or gone since it was pushed
        return None

    def due(self, now: datetime) -> list[tuple[str, Timer]]:
        """The timers due at `now`, with their keys, taken out."""
        found = []
        while (at := self.next_at()) is not None and at <= now:
            _, key, timer_id = heapq.heappop(self._heap)
            timer = self._pending.pop((key, timer_id))
            self._by_key.get(key, set()).discard(timer_id)
            found.append((key, timer))
        return found

    def __len__(self) -> int:
        return len(self._pending)
