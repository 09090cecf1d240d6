"""A deployment of its own for the benchmarks that run a fleet of `coupons serve` processes
(`bench/chaos.py`, `bench/replicas.py`): a local Kafka and PostgreSQL in a state directory,
a fresh database and topic prefix on them, and a `Fleet` whose members share these, with the
guessing throttle relaxed (the loads send many requests from few contacts). On exit every
member, the broker and the database server are stopped."""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from services.coupons.settings import Settings
from services.devstack.fleet import Fleet
from services.devstack.jars import default_cache_dir
from services.devstack.kafka import LocalKafka
from services.devstack.postgres import LocalPostgres

RELAXED = {
    "COUPONS_THROTTLE_FAILURES": "1000000",
    "COUPONS_THROTTLE_ADDRESS_FAILURES": "1000000",
    "COUPONS_THROTTLE_KEY_FAILURES": "1000000",
}


@dataclass(frozen=True)
class Deployment:
    broker: LocalKafka
    database: LocalPostgres
    settings: Settings
    """The fresh database and topic prefix the fleet's members share."""
    fleet: Fleet
    """No member added yet: the caller adds and starts them."""
    log_dir: Path
    """Where the members log: `<state>/logs-<tag>`."""
    tag: str


@contextlib.asynccontextmanager
async def deployed(
    state: Path,
    name: str,
    *,
    kafka_port: int,
    pg_port: int,
    partitions: int,
    env: Mapping[str, str],
) -> AsyncIterator[Deployment]:
    """Start Kafka and PostgreSQL in `state` (in parallel), make the database `<name>_<tag>`
    and the topic prefix `<name><tag>.`, and yield the deployment; the fleet's members get
    `env` over the shared settings (JSON logs, the relaxed throttle)."""
    broker = LocalKafka(state, port=kafka_port, cache_dir=default_cache_dir())
    database = LocalPostgres(state, port=pg_port, database=name)
    tag = uuid.uuid4().hex[:8]
    fleet: Fleet | None = None
    try:
        await asyncio.gather(asyncio.to_thread(broker.start), asyncio.to_thread(database.start))
        admin = await asyncpg.connect(database.database_url)
        try:
            await admin.execute(f'CREATE DATABASE "{name}_{tag}"')
        finally:
            await admin.close()
        settings = Settings(
            KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers,
            DATABASE_URL=database.database_url.rsplit("/", 1)[0] + f"/{name}_{tag}",
            COUPONS_TOPIC_PREFIX=f"{name}{tag}.",
            COUPONS_PARTITIONS=partitions,
        )
        log_dir = state / f"logs-{tag}"
        log_dir.mkdir(parents=True)
        fleet = Fleet(
            {
                "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
                "DATABASE_URL": settings.database_url,
                "COUPONS_TOPIC_PREFIX": settings.topic_prefix,
                "COUPONS_PARTITIONS": str(settings.partitions),
                "COUPONS_LOG_FORMAT": "json",
                **RELAXED,
                **env,
            }
        )
        yield Deployment(broker, database, settings, fleet, log_dir, tag)
    finally:
        if fleet is not None:
            fleet.stop_all()
        await asyncio.to_thread(broker.stop)
        await asyncio.to_thread(database.stop)
