"""Where a validation's CPU goes, phase by phase, over `bench/lane.py`'s path (the whole ASGI
stack in process, no network, broker or database).

A sampling profiler: while validations run, a thread looks at the main thread's stack every
`--interval-ms` and counts the main thread's CPU since its last look against the innermost
function of `PHASES` on it ("other": none of them, i.e. the event loop and the ASGI glue
between the layers). Wrapping
each phase in a stopwatch was tried first and abandoned: its own cost (about 2 µs a call,
varying with the load) was as large as the phases. A phase's share of the samples times the
CPU per validation (`bench/lane.py`'s figure, measured first without the sampler) is its µs.
A phase named in `PHASES` but gone from the code is skipped, so the same script runs on the
code before and after a change (`PYTHONPATH=<tree> python bench/lane_phases.py`).

    python bench/lane_phases.py --seconds 20
"""

import argparse
import asyncio
import importlib
import inspect
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any

from bench import lane
from services.coupons import logs

EVICTION = "the bench's cache eviction (--evict)"
PHASES: list[tuple[str, str, str]] = [
    # (module, function's attribute path, label); a sample counts for the innermost one
    ("services.coupons.app", "Correlated.__call__", "correlation id, request log"),
    ("services.coupons.api.correlation", "Correlated.__call__", "correlation id, request log"),
    ("services.coupons.api.correlation", "correlation_id", "correlation id, request log"),
    ("structlog.contextvars", "bind_contextvars", "correlation id, request log"),
    ("structlog.contextvars", "reset_contextvars", "correlation id, request log"),
    ("services.coupons.api.body_limit", "BodyLimit.__call__", "body limit"),
    ("services.coupons.api.checkout_lane", "CheckoutLane.__call__", "lane: route, answer sent"),
    ("services.coupons.api.checkout_lane", "CheckoutLane._answer", "lane: route, answer sent"),
    ("services.coupons.api.checkout_lane", "_validate", "lane: handler"),
    ("services.coupons.api.auth", "authorised", "auth (key cache)"),
    ("services.coupons.api.auth", "key_of", "auth (key cache)"),
    ("services.coupons.api.auth", "carrying", "auth (key cache)"),
    ("services.coupons.api.checkout_lane", "_headers", "headers read"),
    ("starlette.requests", "Request.__init__", "headers read"),
    ("starlette.requests", "Request.headers", "headers read"),
    ("starlette.requests", "Request.body", "body read"),
    ("services.coupons.api.checkout_lane", "_body", "body read"),
    ("pydantic.main", "BaseModel.model_validate_json", "body parse"),
    ("services.coupons.api.checkout", "shopper_address", "shopper address header"),
    ("services.coupons.api.commands", "call_of", "call built"),
    ("services.coupons.service.checkout", "validate", "use case"),
    ("services.coupons.service.checkout_models", "ValidationRequest.normalised_codes", "use case"),
    ("services.coupons.service.checkout_lookups", "throttled", "guessing throttle"),
    ("services.coupons.service.checkout_lookups", "guessed", "guessing throttle"),
    ("services.coupons.service.checkout_lookups", "campaign_of", "campaign view look-up"),
    ("services.coupons.service.checkout_lookups", "segments_of", "segments look-up"),
    ("services.coupons.contacts.lookup", "member_segments", "segments look-up"),
    ("services.coupons.service.checkout", "_assess", "decide: command, dispatch, event"),
    ("services.coupons.domain.campaign", "decide", "decide: command, dispatch, event"),
    ("services.coupons.domain.campaign", "_redeem", "decide: command, dispatch, event"),
    ("pydantic.main", "BaseModel.model_construct", "decide: command, dispatch, event"),
    ("services.coupons.domain.refusals", "priced", "decide: terms and attempt built"),
    ("services.coupons.domain.refusals", "refusal", "decide: terms and attempt built"),
    ("services.coupons.domain.refusals", "assess", "decide: terms and attempt built"),
    ("services.coupons.domain.eligibility", "evaluate", "decide: the checks"),
    ("services.coupons.domain.eligibility", "assess", "decide: the checks"),
    ("services.coupons.domain.eligibility", "_checks", "decide: the checks"),
    ("services.coupons.domain.pricing", "discount_for", "decide: pricing"),
    ("services.coupons.domain.pricing", "total_after", "decide: pricing"),
    ("services.coupons.service.checkout", "_result", "answer built"),
    ("pydantic.main", "BaseModel.__init__", "answer built"),
    ("pydantic.main", "BaseModel.model_dump_json", "answer serialised"),
    ("bench.lane", "evict_caches", EVICTION),
]
"""`BaseModel.__init__` is the answer's models here (and the event's, before: a validation
built a `CodeRedeemed`, counted under "decide: command, dispatch, event" as its caller)."""


def _resolve(module: str, path: str) -> tuple[Any, str] | None:
    owner: Any = importlib.import_module(module)
    *parents, name = path.split(".")
    for parent in parents:
        owner = getattr(owner, parent, None)
        if owner is None:
            return None
    return (owner, name) if hasattr(owner, name) else None


def _codes() -> dict[CodeType, str]:
    found: dict[CodeType, str] = {}
    for module, path, label in PHASES:
        owner = _resolve(module, path)
        if owner is None:
            continue
        function: Any = inspect.getattr_static(*owner)
        function = getattr(function, "__func__", function)  # a classmethod's function
        function = getattr(function, "fget", function)  # a property's getter
        code = getattr(inspect.unwrap(function), "__code__", None)
        if code is not None:
            found.setdefault(code, label)
    return found


def innermost_phase(frame: FrameType | None, codes: dict[CodeType, str]) -> str:
    while frame is not None:
        if (hit := codes.get(frame.f_code)) is not None:
            return hit
        frame = frame.f_back
    return "other: event loop, ASGI glue"


class Sampler(threading.Thread):
    """Every `interval_s`, the CPU the main thread used since the last look (its own CPU
    clock) is counted against `label(its stack)`: where it is now stands for where it was
    since, so a share of the counts is a share of CPU (time the thread waited counts for
    nothing, unlike a count of samples)."""

    def __init__(
        self,
        label: Callable[[FrameType | None], str],
        interval_s: float = 0.0005,
    ) -> None:
        super().__init__(daemon=True)
        self.cpu_ns: Counter[str] = Counter()
        self._label = label
        self._interval_s = interval_s
        self._main = threading.get_ident()  # made on the main thread
        self._clock = time.pthread_getcpuclockid(self._main)
        self._done = threading.Event()

    def run(self) -> None:
        last = time.clock_gettime_ns(self._clock)
        while not self._done.is_set():
            frame = sys._current_frames().get(self._main)
            now = time.clock_gettime_ns(self._clock)
            self.cpu_ns[self._label(frame)] += now - last
            last = now
            time.sleep(self._interval_s)

    def stop(self) -> None:
        self._done.set()
        self.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0, help="of sampled validations")
    parser.add_argument("--interval-ms", type=float, default=0.5)
    parser.add_argument("--evict", type=int, default=0, metavar="KB", help="as bench/lane.py's")
    args = parser.parse_args()
    logs.configure("WARNING", "json")  # as bench/lane.py and bench/checkout.py serve
    # µs, without the sampler
    cpu = statistics.median(asyncio.run(lane.measure(False, 5, args.evict)))
    codes = _codes()
    sys.setswitchinterval(args.interval_ms / 1000 / 2)  # so the sampler gets its turns
    sampler = Sampler(lambda frame: innermost_phase(frame, codes), args.interval_ms / 1000)
    batches = max(1, int(args.seconds * 1e6 / cpu / lane.CALLS))  # each well within the key
    # cache's 10 s, as bench/lane.py's
    sampler.start()
    try:
        asyncio.run(lane.measure(False, batches, args.evict))
    finally:
        sampler.stop()
    samples = sampler.cpu_ns
    samples.pop(EVICTION, None)  # lane.measure's figure leaves it out too
    total = sum(samples.values())
    print(f"{'phase':<40} {'share':>6} {'µs':>6}")
    for label, count in samples.most_common():
        print(f"{label:<40} {count / total:6.1%} {count / total * cpu:6.1f}")
    print(f"{'CPU per validation (bench/lane.py)':<40} {'':>6} {cpu:6.1f}")


if __name__ == "__main__":
    main()
