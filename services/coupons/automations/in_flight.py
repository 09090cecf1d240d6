"""How many runs the sender has handed to the deciders and not yet had answered, bounded.

A run is claimed only when it can be sent at once, so a trigger waits in `automation_runs`
(in due order, where a replica or a restart can take it) rather than in a decider's queue.
Each run frees its place when it is answered, not when its whole claim is (the batches
before waited for their slowest reply and their outcome write), so the next claim goes as
soon as there is room. The bound is what the deciders can have in hand while the sender
claims more: on a loaded machine a round trip takes seconds, and 1,000 in flight then held
the sender below 1,000/s (docs/performance/automations.md)."""

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
        """`n` places taken (never more than `room()` said): a claimer takes its limit before
        it claims, so a claimer beside it sees only the room left, and gives back what it
        did not send (`done(n)`)."""
        if self.count + n > self.limit:
            raise ValueError(f"{n} more runs exceed the room of {self.limit - self.count}")
        self.count += n

    def done(self, n: int = 1) -> None:
        """A run was answered, or given up on for now (or `n` places taken and not used)."""
        if n > self.count:
            raise ValueError(f"{n} places freed, but only {self.count} are taken")
        self.count -= n
        self._freed.set()
