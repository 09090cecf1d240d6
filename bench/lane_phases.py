"""Where a validation's CPU goes, phase by phase, over `bench/lane.py`'s path (the whole ASGI
stack in process, no network, broker or database).

Each phase is a function wrapped at run time (in this script only) with a CPU (`thread_time_ns`)
stopwatch; a phase's own time is its time less that of the phases it calls. The wrappers' own
cost is measured on an empty function and taken off each phase's figure, so the column adds
up to about what `bench/lane.py` gives. A phase named in `PHASES` but gone from the code is
skipped, so the same script runs on the code before and after a change
(`PYTHONPATH=<tree> python bench/lane_phases.py`).

    python bench/lane_phases.py --calls 3000
"""

import argparse
import asyncio
import functools
import importlib
import inspect
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench import lane
from services.coupons import logs

PHASES: list[tuple[str, str, str]] = [
    # (module, attribute path, label); nested phases are subtracted from their callers
    ("services.coupons.app", "Correlated.__call__", "correlation id, request log"),
    ("services.coupons.api.body_limit", "BodyLimit.__call__", "body limit"),
    ("services.coupons.api.checkout_lane", "CheckoutLane.__call__", "lane: route, answer sent"),
    ("services.coupons.api.checkout_lane", "_validate", "lane: handler glue"),
    ("services.coupons.api.checkout_lane", "authorised", "auth (key cache)"),
    ("services.coupons.api.checkout_lane", "key_of", "auth (key cache)"),
    ("services.coupons.api.checkout_lane", "carrying", "auth (key cache)"),
    ("services.coupons.api.checkout_lane", "_headers", "headers picked"),
    ("services.coupons.api.checkout_lane", "_body", "body read"),
    ("starlette.requests", "Request.body", "body read"),
    ("services.coupons.api.checkout_lane", "ValidationRequest.model_validate_json", "body parse"),
    ("services.coupons.api.checkout_lane", "_parse", "body parse"),
    ("services.coupons.api.checkout_lane", "shopper_address", "shopper address header"),
    ("services.coupons.api.checkout_lane", "call_of", "call built"),
    ("services.coupons.service.checkout", "validate", "use case glue"),
    ("services.coupons.service.checkout", "throttled", "guessing throttle check"),
    ("services.coupons.service.checkout", "guessed", "guessing throttle check"),
    (
        "services.coupons.service.checkout_models",
        "ValidationRequest.normalised_codes",
        "codes normalised",
    ),
    ("services.coupons.service.checkout", "campaign_of", "campaign view look-up"),
    ("services.coupons.service.checkout", "segments_of", "segments look-up"),
    ("services.coupons.service.checkout", "_assess", "decide: glue, command built"),
    ("services.coupons.service.checkout", "assess", "decide: glue, command built"),
    ("services.coupons.domain.campaign", "decide", "decide: dispatch, event built"),
    ("services.coupons.domain.campaign", "priced", "decide: price glue"),
    ("services.coupons.domain.refusals", "refusal", "decide: offer, attempt, usage built"),
    ("services.coupons.domain.eligibility", "evaluate", "decide: the checks"),
    ("services.coupons.domain.refusals", "assess", "decide: offer, attempt, usage built"),
    ("services.coupons.domain.eligibility", "assess", "decide: the checks"),
    ("services.coupons.domain.refusals", "pricing.discount_for", "decide: pricing"),
    ("services.coupons.domain.eligibility", "discount_for", "decide: pricing"),
    ("services.coupons.service.checkout", "_result", "answer built"),
    ("services.coupons.service.checkout", "ValidationResult", "answer built"),
    ("services.coupons.api.checkout_lane", "_json", "answer serialised"),
]


def _resolve(module: str, path: str) -> tuple[Any, str] | None:
    owner: Any = importlib.import_module(module)
    *parents, name = path.split(".")
    for parent in parents:
        owner = getattr(owner, parent, None)
        if owner is None:
            return None
    return (owner, name) if hasattr(owner, name) else None


class Stopwatch:
    """Each phase's own CPU (its time less its wrapped callees'), its calls, and how many
    wrapped callees of each kind (sync, async) it made."""

    def __init__(self) -> None:
        self.own: dict[str, int] = defaultdict(int)
        self.calls: dict[str, int] = defaultdict(int)
        self.callees: dict[tuple[str, bool], int] = defaultdict(int)  # (label, async)
        self.stack: list[list[int]] = []  # per open phase: [callees' time, sync, async]

    def enter(self) -> None:
        self.stack.append([0, 0, 0])

    def leave(self, label: str, elapsed: int, is_async: bool) -> None:
        inner, sync_callees, async_callees = self.stack.pop()
        self.own[label] += elapsed - inner
        self.calls[label] += 1
        self.callees[label, False] += sync_callees
        self.callees[label, True] += async_callees
        if self.stack:
            self.stack[-1][0] += elapsed
            self.stack[-1][2 if is_async else 1] += 1


def _wrap(watch: Stopwatch, label: str, function: Callable[..., Any]) -> Callable[..., Any]:
    clock = time.thread_time_ns  # CPU: on a shared machine wall time counts the waits
    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            watch.enter()
            started = clock()
            try:
                return await function(*args, **kwargs)
            finally:
                watch.leave(label, clock() - started, True)

        return timed_async

    @functools.wraps(function)
    def timed(*args: Any, **kwargs: Any) -> Any:
        watch.enter()
        started = clock()
        try:
            return function(*args, **kwargs)
        finally:
            watch.leave(label, clock() - started, False)

    return timed


@dataclass(frozen=True)
class Overhead:
    """A wrapper's cost, ns per call: the part its own phase sees (inside its stopwatch) and
    the part its caller's phase sees, for a sync and an async callee."""

    inside: dict[bool, float]
    outside: dict[bool, float]


def _overhead(calls: int = 50_000) -> Overhead:
    """Measured on empty callees, each called from a wrapped caller, with and without its
    own wrapper."""
    inside: dict[bool, float] = {}
    outside: dict[bool, float] = {}
    for is_async in (False, True):
        inside[is_async], outside[is_async] = _overhead_of(is_async, calls)
    return Overhead(inside, outside)


def _overhead_of(is_async: bool, calls: int) -> tuple[float, float]:
    watch = Stopwatch()

    def empty() -> None:
        return None

    async def empty_async() -> None:
        return None

    bare: Callable[..., Any] = empty_async if is_async else empty
    timed = _wrap(watch, "callee", bare)

    async def caller(callee: Callable[..., Any] = timed) -> None:
        result = callee()
        if is_async:
            await result

    async def bare_caller(callee: Callable[..., Any] = bare) -> None:
        result = callee()
        if is_async:
            await result

    with_wrapper = _wrap(watch, "caller", caller)
    without = _wrap(watch, "bare caller", bare_caller)

    async def run() -> None:
        for _ in range(calls):
            await with_wrapper()
            await without()

    asyncio.run(run())
    return (
        watch.own["callee"] / calls,
        (watch.own["caller"] - watch.own["bare caller"]) / calls,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=3_000)
    args = parser.parse_args()
    logs.configure("WARNING", "json")  # as bench/lane.py and bench/checkout.py serve
    watch = Stopwatch()
    async_labels: set[str] = set()
    for module, path, label in PHASES:
        found = _resolve(module, path)
        if found is None:
            continue
        owner, name = found
        original = getattr(owner, name)
        if isinstance(inspect.getattr_static(owner, name), classmethod):
            original = original.__func__
            setattr(owner, name, classmethod(_wrap(watch, label, original)))
        else:
            setattr(owner, name, _wrap(watch, label, original))
        if inspect.iscoroutinefunction(original):
            async_labels.add(label)
    lane.CALLS = args.calls
    asyncio.run(lane.measure(False, 1))  # warm-up, then one counted batch below
    watch.own.clear()
    watch.calls.clear()
    cpu = asyncio.run(lane.measure(False, 1))[0]
    overhead = _overhead()
    calls = 2 * args.calls  # measure() runs a warm-up batch and the batch
    print(f"{'phase':<40} {'µs':>6}")
    phases = {
        label: (
            ns
            - overhead.inside[label in async_labels] * watch.calls[label]
            - sum(overhead.outside[kind] * watch.callees[label, kind] for kind in (False, True))
        )
        / calls
        / 1000
        for label, ns in watch.own.items()
    }
    for label, us in sorted(phases.items(), key=lambda item: -item[1]):
        print(f"{label:<40} {us:6.2f}")
    own = sum(phases.values())
    print(f"{'sum of the phases':<40} {own:6.2f}")
    taken = ", ".join(
        f"{overhead.inside[k] / 1000:.2f} + {overhead.outside[k] / 1000:.2f}" for k in (False, True)
    )
    print(f"{'(wrapper cost taken off: sync, async)':<40} {taken}")
    print(f"{'CPU per call, wrappers included':<40} {cpu:6.2f}")


if __name__ == "__main__":
    main()
