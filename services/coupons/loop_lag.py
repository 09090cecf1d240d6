"""How late this process's event loop runs what is due: a task asks to wake every `EVERY_S`
and records by how much it woke late. Every component of a process shares one loop, so a
statement's answer, a commit's acknowledgement or a reply waits that long too, once per
round trip: under load the lag, not the database or the broker, sets a stage's latency
(docs/performance/automations.md, "The event loop's lag"). Exported at `/metrics` as the
histogram `coupons_event_loop_lag_seconds`."""

import asyncio
import bisect
from dataclasses import dataclass, field

EVERY_S = 0.1
"""How often the watch asks to wake: 10 samples a second, a negligible cost."""
BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""The histogram's upper bounds, seconds."""


@dataclass
class Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BOUNDS) + 1))
    """Per bucket (not cumulative); the last one above every bound."""
    total_s: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BOUNDS, seconds)] += 1
        self.total_s += seconds

    def lines(self, name: str) -> list[str]:
        """The Prometheus text format's lines of a histogram named `name`."""
        found = [
            f"# HELP {name} How late the event loop ran a task due to wake (this process).",
            f"# TYPE {name} histogram",
        ]
        cumulative = 0
        for bound, count in zip((*map(str, BOUNDS), "+Inf"), self.counts, strict=True):
            cumulative += count
            found.append(f'{name}_bucket{{le="{bound}"}} {cumulative}')
        found += [f"{name}_sum {self.total_s:.6f}", f"{name}_count {cumulative}"]
        return found


LAG = Histogram()
"""This process's, since it started."""


async def watch(histogram: Histogram = LAG, every_s: float = EVERY_S) -> None:
    """For ever: sleep `every_s`, record how late the wake-up came."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + every_s
        await asyncio.sleep(every_s)
        histogram.observe(max(0.0, loop.time() - due))
