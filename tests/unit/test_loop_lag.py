"""The event loop's lag: a loop held by synchronous work is recorded as late by at least as
long as it was held; the histogram's Prometheus lines are cumulative."""

import asyncio
import time

from services.coupons.loop_lag import BOUNDS, Histogram, watch


class _Noted(Histogram):
    def __init__(self) -> None:
        super().__init__()
        self.observed = asyncio.Event()

    def observe(self, seconds: float) -> None:
        super().observe(seconds)
        self.observed.set()


async def test_a_loop_held_by_synchronous_work_is_recorded_late_by_as_long() -> None:
    histogram = _Noted()
    watching = asyncio.create_task(watch(histogram, every_s=0.01))
    try:
        await asyncio.sleep(0)  # the watch's first sleep is due in 10 ms
        time.sleep(0.06)  # noqa: ASYNC251 - the point: the loop held, it wakes >= 50 ms late
        await asyncio.wait_for(histogram.observed.wait(), 5)
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
    at_least_50_ms = sum(histogram.counts[BOUNDS.index(0.05) + 1 :])
    assert at_least_50_ms >= 1, histogram.counts
    assert histogram.total_s >= 0.05


def test_the_histogram_lines_are_cumulative_with_a_sum_and_a_count() -> None:
    histogram = Histogram()
    for seconds in (0.001, 0.003, 0.2, 7.0):
        histogram.observe(seconds)
    lines = histogram.lines("lag")
    assert 'lag_bucket{le="0.005"} 2' in lines
    assert 'lag_bucket{le="0.1"} 2' in lines
    assert 'lag_bucket{le="0.25"} 3' in lines
    assert 'lag_bucket{le="5.0"} 3' in lines
    assert 'lag_bucket{le="+Inf"} 4' in lines
    assert "lag_count 4" in lines
    assert "lag_sum 7.204000" in lines
