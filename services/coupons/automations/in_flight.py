"""How many runs the sender has handed to the deciders and not yet had answered, bounded.

A run is claimed only when it can be sent at once, so a trigger waits in `automation_runs`
(in due order, where a replica or a restart can take it) rather than in a decider's queue.
The bound keeps each command's round trip short: the deciders decide what they are handed at
once but commit one transaction at a time per partition, so what is handed beyond what they
commit meanwhile only queues inside them (4,000 in flight made most of them wait longer than
the gateway's hand-over patience, and appended each to the commands topic too:
docs/performance/automations.md). Each run frees its place when answered, not when its whole
claim is, so the next claim goes as soon as there is room."""

import asyncio


class InFlight:
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("at least one run must be allowed in flight")
        self.limit = limit
        self.count = 0
        self._freed = asyncio.Event()

    async def room(self) -> int:
        """How many more runs may go now; waits until at least one may."""
        while self.count >= self.limit:
            self._freed.clear()
            await self._freed.wait()
        return self.limit - self.count

    def take(self, n: int) -> None:
        """`n` runs sent (never more than `room()` said)."""
        if self.count + n > self.limit:
            raise ValueError(f"{n} more runs exceed the room of {self.limit - self.count}")
        self.count += n

    def done(self) -> None:
        """A run was answered, or given up on for now."""
        self.count -= 1
        self._freed.set()
