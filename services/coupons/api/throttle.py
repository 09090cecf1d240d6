"""Throttle guessing: failed validations and redemptions per (API key, client address).

After `limit` failures within `window_s` seconds, further checkout calls get 429
`too_many_failures` with `Retry-After` until the oldest failure leaves the window. Successes
are never throttled. Counted per replica, in memory: N replicas allow up to N x limit."""

import math
import time
from collections import deque


class FailureThrottle:
    def __init__(self, limit: int, window_s: float) -> None:
        self._limit = limit
        self._window_s = window_s
        self._failures: dict[tuple[str, str], deque[float]] = {}

    def retry_after(self, caller: tuple[str, str]) -> int | None:
        """Seconds to wait before `caller` may try again, or None if it may now."""
        failures = self._failures.get(caller)
        if failures is None:
            return None
        now = time.monotonic()
        while failures and now - failures[0] >= self._window_s:
            failures.popleft()
        if not failures:
            del self._failures[caller]
            return None
        if len(failures) < self._limit:
            return None
        return max(1, math.ceil(self._window_s - (now - failures[0])))

    def failed(self, caller: tuple[str, str]) -> None:
        self._failures.setdefault(caller, deque()).append(time.monotonic())
