"""The suite provisions real Kafka and PostgreSQL itself (services.devstack), or uses
KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL when set. Each test gets its own topics (a unique
prefix) and its own database, so tests never see each other's data."""

import os
import signal
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from services.coupons.settings import Settings
from services.coupons.store.migrate import migrate
from services.devstack import service as coupons_process
from services.devstack.stack import Endpoints, default_state_dir, provisioned
from tests.integration.helpers import SECRET

TEST_KAFKA_PORT = int(os.environ.get("COUPONS_TEST_KAFKA_PORT", "29092"))
TEST_PG_PORT = int(os.environ.get("COUPONS_TEST_PG_PORT", "25432"))
RELAXED = {
    "COUPONS_THROTTLE_FAILURES": "1000000",
    "COUPONS_THROTTLE_ADDRESS_FAILURES": "1000000",
    "COUPONS_THROTTLE_KEY_FAILURES": "1000000",
}
"""Throttling relaxed, for a service that fails many checkouts on purpose."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/integration is marked `integration` (its module's pytestmark)."""
    unmarked = [
        i.nodeid
        for i in items
        if "/integration/" in str(i.path) and i.get_closest_marker("integration") is None
    ]
    assert not unmarked, f"integration tests without pytestmark: {unmarked}"


@pytest.fixture(scope="session")
def endpoints() -> Iterator[Endpoints]:
    state_dir = Path(os.environ.get("COUPONS_TEST_STATE_DIR", default_state_dir() / "test"))
    with provisioned(
        state_dir,
        kafka_port=TEST_KAFKA_PORT,
        pg_port=TEST_PG_PORT,
        database="coupons_test",
        fresh_kafka=True,  # no test reads an earlier run's topics
    ) as found:
        yield found


def database_url(base: str, name: str) -> str:
    return base.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
async def migrated_template(endpoints: Endpoints) -> str:
    """A database migrated once per session, which each test's database copies: a service
    then starts on its schema instead of applying every migration again (half a second a
    test, on the quiet machine)."""
    name = f"t_template_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(endpoints.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(database_url(endpoints.database_url, name))
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return name


@pytest.fixture
async def settings(
    endpoints: Endpoints, migrated_template: str, request: pytest.FixtureRequest
) -> AsyncIterator[Settings]:
    """Settings for one test: fresh topics and a fresh database, dropped afterwards. The
    database is migrated already, unless the test is marked `blank_database`."""
    suffix = uuid.uuid4().hex[:10]
    name = f"t_{suffix}"
    blank = request.node.get_closest_marker("blank_database") is not None
    template = "template1" if blank else migrated_template
    admin = await asyncpg.connect(endpoints.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
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
        await _delete_topics(endpoints.kafka_bootstrap_servers, f"t{suffix}.")


async def _delete_topics(bootstrap: str, prefix: str) -> None:
    """Delete a finished test's topics: a broker left with every test's partitions (some
    thousands by the end) answers each new client's first metadata request more slowly."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def create_key(database_url: str, scope: str) -> str:
    """A new API key named `tests-<scope>`, made the way a person would: `coupons keys create`."""
    return coupons_process.create_key(database_url, scope, f"tests-{scope}")


ServiceFactory = Callable[..., tuple[httpx.Client, Path]]


@pytest.fixture
def start_service(settings: Settings, tmp_path: Path) -> Iterator[ServiceFactory]:
    """Start `coupons serve` as a real process; returns a client holding an admin key."""
    started: list[tuple[subprocess.Popen[bytes], httpx.Client, Path]] = []

    def start(**extra_env: str) -> tuple[httpx.Client, Path]:
        port = free_port()
        log_path = tmp_path / f"service-{len(started)}.log"
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "DATABASE_URL": settings.database_url,
            "COUPONS_TOPIC_PREFIX": settings.topic_prefix,
            "COUPONS_PARTITIONS": str(settings.partitions),
            "COUPONS_PORT": str(port),
            **extra_env,
        }
        process = coupons_process.serve(env, log_path)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        started.append((process, client, log_path))
        coupons_process.wait_ready(process, str(client.base_url), log_path)
        client.headers["Authorization"] = f"Bearer {create_key(settings.database_url, 'admin')}"
        return client, log_path

    yield start
    for process, client, log_path in started:
        client.close()
        if process.poll() == -signal.SIGKILL:
            continue  # killed on purpose by the test
        process.terminate()
        # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status says why
        assert process.wait(timeout=30) in (0, -signal.SIGTERM)
        assert '"event": "runtime.stopped"' in log_path.read_text(), "no graceful shutdown"


@pytest.fixture
def service(start_service: ServiceFactory) -> tuple[httpx.Client, Path]:
    """The service with throttling relaxed, for tests that fail many checkouts on purpose."""
    return start_service(**RELAXED)


@pytest.fixture
def bridge(start_service: ServiceFactory) -> httpx.Client:
    client, _ = start_service(STRIPE_WEBHOOK_SECRET=SECRET, **RELAXED)
    return client
