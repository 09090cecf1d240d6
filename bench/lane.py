"""CPU per checkout call through the whole ASGI stack, without a network, a broker or a
database: correlation ids, the body limit, the checkout lane, authorisation (from the key
cache), the use case (`service.checkout`) and the in-memory campaign view, over a fake
runtime whose gateway accepts every redemption at once. It measures what this process spends
on a call, so it holds on a busy, shared machine where `bench/checkout.py`'s throughput does
not: to compare two versions of the code, run it on each, alternately
(`PYTHONPATH=<tree> python bench/lane.py`).

`--evict KB` copies a buffer of that size between calls, so each call starts with the CPU's
caches holding someone else's memory, as a served request does (uvicorn, the kernel's network
stack and the other processes run between two calls of the app); the copy's own CPU, timed
alone, is subtracted. Served, the same code costs about twice its in-loop figure
(docs/performance/checkout.md, "Where the served engine's extra CPU goes").
"""

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from contracts.commands import DefineCampaign, RedeemCode
from contracts.envelope import Envelope
from contracts.events import CodeRedeemed
from contracts.money import AmountOff
from contracts.replies import Reply
from services.coupons import logs
from services.coupons.app import create_app
from services.coupons.domain import campaign as aggregate
from services.coupons.settings import Settings
from services.coupons.store.api_keys import ApiKey

NOW = datetime.now(UTC)
CALLS = 2000


def campaign() -> aggregate.Campaign:
    define = DefineCampaign(
        campaign_id="c1",
        name="Bench",
        code="BENCH",
        discount=AmountOff(amount_off=100, currency="EUR"),
    )
    state = None
    for event in aggregate.decide(None, define, NOW):
        state = aggregate.evolve(state, event, NOW)
    assert state is not None
    return state


class View:
    def __init__(self) -> None:
        self.state = campaign()

    def campaign_of(self, code: str) -> aggregate.Campaign | None:
        return self.state if code == "BENCH" else None


class Throttle:
    def wait_s(self, *_: Any) -> None:
        return None

    async def failed(self, *_: Any) -> None:
        return None


class Gateway:
    async def decide(self, envelope: Envelope[RedeemCode]) -> Reply:
        command = envelope.data
        redeemed = CodeRedeemed(
            campaign_id="c1",
            redemption_id=command.redemption_id,
            code="BENCH",
            contact_id=command.customer.contact_id,
            order_ref=command.order_ref,
            currency="EUR",
            amount=command.cart.amount,
            discount=100,
            total=command.cart.amount - 100,
        )
        return Reply(command_id=envelope.id, outcome="accepted", decided_at=NOW, redeemed=redeemed)


def evict_caches(other: bytearray) -> None:
    """Replace the CPU caches' contents with `other` (a copy of it: memory the app never uses)."""
    bytes(other)


def evicting(kb: int) -> Callable[[], None]:
    """A function that evicts the caches with `kb` KiB of other memory (0: does nothing)."""
    other = bytearray(kb * 1024)
    return (lambda: evict_caches(other)) if kb else (lambda: None)


def eviction_cost(evict: Callable[[], None]) -> float:
    """Microseconds of CPU of one `evict()`, to subtract from a call's."""
    started = time.process_time()
    for _ in range(CALLS):
        evict()
    return (time.process_time() - started) / CALLS * 1e6


async def measure(redeem: bool, batches: int, evict_kb: int = 0) -> list[float]:
    """Microseconds of CPU per call, one figure per batch of CALLS calls; with `evict_kb`,
    of a call that starts with cold caches."""
    os.environ.setdefault("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")  # never reached
    os.environ.setdefault("DATABASE_URL", "postgresql://127.0.0.1:9/none")
    settings = Settings()
    asgi = create_app(settings)
    app: Any = asgi
    while not hasattr(app, "openapi"):  # the FastAPI app inside the ASGI wrappers
        app = app.app
    app.state.runtime = SimpleNamespace(
        view=View(), throttle=Throttle(), gateway=Gateway(), settings=settings, pool=None
    )
    path = "/v1/redemptions" if redeem else "/v1/validations"
    payload: dict[str, Any] = {
        "code": "bench",
        "customer": {"contact_id": "c_1"},
        "cart": {"currency": "EUR", "amount": 4900},
    }
    if redeem:
        payload["order_ref"] = "o1"
    body = json.dumps(payload).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
        "headers": [
            (b"authorization", b"Bearer bench"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"idempotency-key", b"bench-1"),
        ],
    }
    expected = 201 if redeem else 200

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            assert message["status"] == expected, message

    evict = evicting(evict_kb)

    async def calls() -> float:
        app.state.key_cache.put("bench", ApiKey(id="k1", name="bench", scope="checkout"))
        started = time.process_time()
        for _ in range(CALLS):
            evict()
            await asgi(dict(scope), receive, send)
        return (time.process_time() - started) / CALLS * 1e6 - eviction_cost(evict)

    await calls()  # warm-up
    return [await calls() for _ in range(batches)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument(
        "--evict", type=int, default=0, metavar="KB", help="other memory copied between calls"
    )
    args = parser.parse_args()
    # as `bench/checkout.py` serves (COUPONS_LOG_LEVEL=WARNING): structlog's default set-up,
    # which this used to keep, renders every request's log line for the console, a third of
    # a validation's CPU in a profile that the service never spends
    logs.configure("WARNING", "json")
    for redeem in (False, True):
        found = asyncio.run(measure(redeem, args.batches, args.evict))
        what = "redemption" if redeem else "validation"
        print(f"{what:<10}  median {statistics.median(found):6.1f}  min {min(found):6.1f} µs CPU")


if __name__ == "__main__":
    main()
