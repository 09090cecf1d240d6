"""The guessing throttle's cost on the happy path: CPU per valid validation, in process.

Serves the real application (its runtime on a real Kafka and PostgreSQL, provisioned like
`make test`'s unless KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL are set) through httpx's ASGI
transport, so no socket or HTTP parser is timed: only what the application does. Rounds
alternate between:

- `without`: the throttle's check and count replaced by no-ops (this script only);
- `with`: as served, nobody blocked;
- `with, address`: as served, with `X-Shopper-Address` (the header parsed and checked);
- `with, 10k blocked`: as served, 10,000 other shoppers blocked (the lookup hashes the
  call's subjects).

It prints the median microseconds per validation of each, then the throttle's own work per
call timed alone (`timeit`): the lookup with nobody blocked, with 10,000 others blocked, and
the parsing of `X-Shopper-Address`. The machine is shared and noisy: compare medians of
several rounds, never one.

    .venv/bin/python -m bench.throttle --rounds 5 --requests 2000
"""

import argparse
import asyncio
import os
import statistics
import time
import timeit
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from services.coupons import logs
from services.coupons.app import create_app
from services.coupons.domain.guessing import Kind, shopper_network, subject
from services.coupons.service import checkout
from services.coupons.service.checkout_lookups import Shopper
from services.coupons.settings import Settings
from services.coupons.store import api_keys
from services.coupons.store.migrate import migrate
from services.devstack.stack import default_state_dir, provisioned

CODE = "BENCHTHROTTLE"


@contextmanager
def throttle_removed() -> Iterator[None]:
    checked, counted = checkout.throttled, checkout.guessed

    def unchecked(_call: Any, customer: Any, _address: Any) -> Shopper:
        return Shopper("", customer.contact_id, None)

    async def uncounted(*_: Any) -> None:
        return None

    checkout.throttled, checkout.guessed = unchecked, uncounted  # type: ignore[assignment]
    try:
        yield
    finally:
        checkout.throttled, checkout.guessed = checked, counted  # type: ignore[assignment]


async def timed(http: httpx.AsyncClient, requests: int, headers: dict[str, str]) -> float:
    """Microseconds per validation, sequential, each by its own contact."""
    started = time.perf_counter()
    for i in range(requests):
        body = {
            "code": CODE,
            "customer": {"contact_id": f"shopper-{i}"},
            "cart": {"currency": "EUR", "amount": 2000},
        }
        answer = await http.post("/v1/validations", json=body, headers=headers)
        assert answer.status_code == 200 and answer.json()["valid"], answer.text
    return (time.perf_counter() - started) / requests * 1e6


async def bench(database_url: str, bootstrap: str, rounds: int, requests: int) -> None:
    settings = Settings(
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        DATABASE_URL=database_url,
        COUPONS_TOPIC_PREFIX=f"bench{uuid.uuid4().hex[:8]}.",
        COUPONS_LOG_LEVEL="WARNING",
    )
    logs.configure("WARNING", "json")
    conn = await asyncpg.connect(database_url)
    await migrate(conn)
    _, secret = await api_keys.create(conn, "bench-throttle", "admin")
    await conn.close()
    app = create_app(settings)
    fastapi_app = app.app.app  # type: ignore[attr-defined]
    async with fastapi_app.router.lifespan_context(fastapi_app):
        transport = httpx.ASGITransport(app=app)
        auth = {"Authorization": f"Bearer {secret}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", headers=auth
        ) as http:
            created = await http.post(
                "/v1/campaigns",
                json={
                    "name": "Bench throttle",
                    "code": CODE,
                    "discount": {"kind": "amount", "amount_off": 500, "currency": "EUR"},
                    "limits": {"per_contact": None},
                },
            )
            assert created.status_code == 201, created.text
            throttle = fastapi_app.state.runtime.throttle
            address = {"X-Shopper-Address": "203.0.113.7"}
            others = {subject(Kind.CONTACT, f"other-{i}"): 3600.0 for i in range(10_000)}
            results: dict[str, list[float]] = {}
            await timed(http, requests, {})  # warm-up
            for _ in range(rounds):
                with throttle_removed():
                    results.setdefault("without", []).append(await timed(http, requests, {}))
                results.setdefault("with", []).append(await timed(http, requests, {}))
                results.setdefault("with, address", []).append(await timed(http, requests, address))
                throttle._block(others)
                results.setdefault("with, 10k blocked", []).append(
                    await timed(http, requests, address)
                )
                throttle._blocked.clear()

        def alone(call: Any) -> float:
            return min(timeit.repeat(call, number=20_000, repeat=5)) / 20_000 * 1e6

        micro = {"lookup, nobody blocked": alone(lambda: throttle.wait_s("k", "c_1", None))}
        throttle._block(others)
        micro["lookup, 10k blocked"] = alone(lambda: throttle.wait_s("k", "c_1", "203.0.113.7"))
        micro["parse X-Shopper-Address"] = alone(lambda: shopper_network("203.0.113.7"))
        throttle._blocked.clear()
    base = statistics.median(results["without"])
    print(f"{rounds} rounds of {requests} validations; median µs per validation:")
    for name, runs in results.items():
        median = statistics.median(runs)
        spread = ", ".join(f"{r:.0f}" for r in runs)
        print(f"  {name:18} {median:7.1f}  ({median - base:+.1f})   rounds: {spread}")
    print("the throttle's own work, µs per call (best of 5 x 20,000):")
    for name, us in micro.items():
        print(f"  {name:24} {us:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    state_dir = Path(os.environ.get("COUPONS_TEST_STATE_DIR", default_state_dir() / "test"))
    with provisioned(
        state_dir,
        kafka_port=int(os.environ.get("COUPONS_TEST_KAFKA_PORT", "29092")),
        pg_port=int(os.environ.get("COUPONS_TEST_PG_PORT", "25432")),
        database=f"bench_throttle_{uuid.uuid4().hex[:8]}",
    ) as endpoints:
        asyncio.run(
            bench(
                endpoints.database_url,
                endpoints.kafka_bootstrap_servers,
                args.rounds,
                args.requests,
            )
        )


if __name__ == "__main__":
    main()
