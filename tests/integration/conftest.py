"""The suite provisions real Kafka and PostgreSQL itself (services.devstack), or uses
KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL when set. Each test gets its own topics (a unique
prefix) and its own database, so tests never see each other's data."""

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from services.coupons.settings import Settings
from services.devstack.stack import Endpoints, default_state_dir, provisioned

TEST_KAFKA_PORT = int(os.environ.get("COUPONS_TEST_KAFKA_PORT", "29092"))
TEST_PG_PORT = int(os.environ.get("COUPONS_TEST_PG_PORT", "25432"))


@pytest.fixture(scope="session")
def endpoints() -> Iterator[Endpoints]:
    state_dir = Path(os.environ.get("COUPONS_TEST_STATE_DIR", default_state_dir() / "test"))
    with provisioned(
        state_dir, kafka_port=TEST_KAFKA_PORT, pg_port=TEST_PG_PORT, database="coupons_test"
    ) as found:
        yield found


def database_url(base: str, name: str) -> str:
    return base.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
async def settings(endpoints: Endpoints) -> AsyncIterator[Settings]:
    """Settings for one test: fresh topics and a fresh database, dropped afterwards."""
    suffix = uuid.uuid4().hex[:10]
    name = f"t_{suffix}"
    admin = await asyncpg.connect(endpoints.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield Settings(
            KAFKA_BOOTSTRAP_SERVERS=endpoints.kafka_bootstrap_servers,
            DATABASE_URL=database_url(endpoints.database_url, name),
            COUPONS_TOPIC_PREFIX=f"t{suffix}.",
            COUPONS_PARTITIONS=3,
            COUPONS_COMMAND_TIMEOUT_S=20,
        )
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
