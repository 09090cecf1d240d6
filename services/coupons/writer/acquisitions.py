"""Partitions assigned to the writers but not yet theirs: each one's acquisition (fence its
previous writer, fold its state from the snapshot and the log) runs as a task of its own,
beside the engine's loop, not inside the consumer group's rebalance callback.

Why: aiokafka awaits the callback inside the group's join, so a fold of minutes there (a first
start on a long log, a starved CPU) stalled the join and the loop's polls, and the group
dropped the member ("member_id was not recognized"): the partitions were given up and folded
again, over and over (docs/performance/resilience.md). Now the callback
only records the assignment and pauses the new partitions' commands; the loop keeps polling
(the group sees a live member) while the folds run, and a partition is resumed and decided
on once its writer is in place.

A member whose loop was starved (a loaded machine, a long garbage collection) can still miss
its heartbeats and be dropped by the group; it then rejoins and, the group being otherwise
unchanged, gets the same partitions back. Their folds are not started again: a revoked
acquisition goes on, held back from taking its partition (`held`) until the next assignment
either gives the partition back (it goes on) or not (it is cancelled). That is safe because
the acquisition's producers were started first: a member that owned the partition meanwhile
fenced them, so a state that missed that member's events cannot commit anything (its first
transaction fails, and the writers restart from the log).
"""

import asyncio
from collections.abc import Awaitable, Callable, Iterable


class Acquisitions:
    def __init__(self, acquire: Callable[[int], Awaitable[None]]) -> None:
        self._acquire = acquire
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._revoked: dict[int, asyncio.Event] = {}  # set when assigned again

    async def assign(self, partitions: Iterable[int]) -> None:
        """Acquire `partitions` (those assigned without a writer): an acquisition still
        running from before a revocation goes on; one whose partition did not come back is
        cancelled."""
        wanted = set(partitions)
        for p in wanted:
            if (back := self._revoked.pop(p, None)) is not None:
                back.set()
            if p not in self._tasks:
                self._tasks[p] = asyncio.create_task(self._run(p), name=f"acquire-p{p}")
        await self.cancel([p for p in self._revoked if p not in wanted])

    def revoke(self, partitions: Iterable[int]) -> None:
        """Hold back the acquisitions of `partitions` until the next assignment."""
        for p in partitions:
            if p in self._tasks:
                self._revoked.setdefault(p, asyncio.Event())

    async def held(self, partition: int) -> None:
        """Return once `partition` is assigned (not revoked since its acquisition began); the
        caller takes it without awaiting anything more."""
        while (back := self._revoked.get(partition)) is not None:
            await back.wait()

    async def _run(self, partition: int) -> None:
        await self._acquire(partition)

    def waits(self) -> list[asyncio.Task[None]]:
        """What the loop waits for beside its fetches: each acquisition's end."""
        return list(self._tasks.values())

    def finished(self) -> list[int]:
        """The partitions acquired since the last call; raises an acquisition's error (the
        writers crash and restart, as a failed transaction makes them)."""
        done = [p for p, task in self._tasks.items() if task.done()]
        for p in done:
            self._tasks.pop(p).result()
        return done

    async def cancel(self, partitions: Iterable[int] | None = None) -> None:
        """Cancel the acquisitions of `partitions` (all: None) and wait for them to end."""
        chosen = list(self._tasks) if partitions is None else list(partitions)
        for p in chosen:
            self._revoked.pop(p, None)
        tasks = [task for p in chosen if (task := self._tasks.pop(p, None)) is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
