"""`make outages`: Kafka, then PostgreSQL, stopped for 60 s and for 3 minutes under checkout
load from clients that retry with their keys; prints, per outage, the slowest `/readyz`
answer during it, any bare 500, and the seconds from the dependency's return to the first
accepted redemption and to `/readyz` 200. About 10 minutes. The test suite rehearses 10 s
outages (`tests/integration/test_outages.py`)."""

import argparse
import asyncio
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from services.devstack import service as coupons_process
from services.devstack.jars import default_cache_dir
from services.devstack.kafka import LocalKafka
from services.devstack.outages import CheckoutLoad, Recovery, rehearse
from services.devstack.postgres import LocalPostgres
from services.devstack.stack import default_state_dir

KAFKA_PORT, PG_PORT, HTTP_PORT = 30492, 30832, 30900  # below the ephemeral range


def serve(broker: LocalKafka, database: LocalPostgres, log: Path) -> subprocess.Popen[bytes]:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "DATABASE_URL": database.database_url,
        "COUPONS_TOPIC_PREFIX": f"outages{int(time.time())}.",
        "COUPONS_PORT": str(HTTP_PORT),
        "COUPONS_THROTTLE_FAILURES": "1000000",
        "COUPONS_THROTTLE_ADDRESS_FAILURES": "1000000",
        "COUPONS_THROTTLE_KEY_FAILURES": "1000000",
    }
    return coupons_process.serve(env, log)


async def main(outages: list[float]) -> list[Recovery]:
    state = default_state_dir() / "bench-outages"
    broker = LocalKafka(state, port=KAFKA_PORT, cache_dir=default_cache_dir())
    database = LocalPostgres(state, port=PG_PORT, database="outages")
    found: list[Recovery] = []
    try:
        await asyncio.to_thread(broker.start)  # it runs asyncio itself: not in this loop
        await asyncio.to_thread(database.start)
        log = Path(tempfile.mkdtemp()) / "service.log"
        process = serve(broker, database, log)
        base = f"http://127.0.0.1:{HTTP_PORT}"
        await asyncio.to_thread(coupons_process.wait_ready, process, base, log)
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            key = coupons_process.create_key(database.database_url, "admin", "outages")
            http.headers["Authorization"] = f"Bearer {key}"
            created = await http.post(
                "/v1/campaigns",
                json={
                    "name": "Outages",
                    "code": "OUTAGES",
                    "discount": {"kind": "amount", "amount_off": 100, "currency": "EUR"},
                    "limits": {"per_contact": None},
                },
            )
            created.raise_for_status()
        load = CheckoutLoad(base, key, "OUTAGES")
        running = asyncio.create_task(load.run(keys=10_000_000, pace_s=0.1))
        for seconds in outages:
            for name, down in (("kafka", broker), ("postgres", database)):
                await asyncio.sleep(5)
                found.append(await rehearse(load, name, down.stop, down.start, seconds, 600))
                print(found[-1], flush=True)
        load.stop()
        await running
        process.terminate()
        process.wait(timeout=60)
        print(f"accepted {len(load.accepted)}, refused {len(load.refused)}, log: {log}")
    finally:
        await asyncio.to_thread(broker.stop)
        await asyncio.to_thread(database.stop)
    return found


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--outages", type=float, nargs="+", default=[60, 180])
    args = parser.parse_args()
    results = asyncio.run(main(args.outages))
    print("\n| dependency | outage | slowest /readyz | bare 500s | first accepted | ready |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r.dependency} | {r.outage_s:g} s | {r.slowest_readyz_s:.1f} s | "
            f"{len(r.server_errors)} | {r.first_accepted_after_s} s | {r.ready_after_s} s |"
        )
