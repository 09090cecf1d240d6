"""The composition root: builds every connection and component from Settings, in the
application's lifespan (never at import time), and tears them down in reverse order."""

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from contracts.automations import DAY
from contracts.topics import Topics, declare
from projections import campaigns, contacts, ledger, usage
from projections.db import DATABASE_UNAVAILABLE
from projections.offsets import stored_offsets
from projections.runner import Projection, ProjectionRunner
from projections.watermarks import Watermarks
from services.coupons import loop_lag
from services.coupons.automations import reaction as automations
from services.coupons.automations.broadcasts import BroadcastRunner
from services.coupons.automations.sender import Sender
from services.coupons.automations.verdict import Cap
from services.coupons.bus import kafka
from services.coupons.bus.gateway import CommandGateway
from services.coupons.bus.same_process import SameProcess
from services.coupons.bus.topics import ensure_topics
from services.coupons.campaign_view import CampaignView
from services.coupons.code_batches import CodeBatchRunner
from services.coupons.code_stock import code_stock
from services.coupons.contacts import components as contact_components
from services.coupons.contacts.ingest import ContactIngest
from services.coupons.decider import STATE_VERSION, Decider
from services.coupons.settings import Settings
from services.coupons.store.migrate import migrate
from services.coupons.store.snapshots import PostgresSnapshots
from services.coupons.stripe.client import client_for
from services.coupons.stripe.consumer import StripeConsumer
from services.coupons.stripe.mirror import MirrorRunner
from services.coupons.stripe.sink import WebhookSink
from services.coupons.supervise import MAX_BACKOFF_S, STOP_TIMEOUT_S, Supervised
from services.coupons.throttle import Throttle
from services.coupons.writer.engine import Writers
from services.coupons.writer.snapshots import SharedStates, Snapshots

log = structlog.get_logger(__name__)

_T = TypeVar("_T")

PROJECTIONS = (
    Projection(campaigns.NAME, campaigns.apply),
    Projection(usage.NAME, usage.apply, usage.TABLES, usage.INDEXES),
    Projection(contacts.NAME, contacts.apply, contacts.TABLES, contacts.INDEXES),
    Projection(ledger.NAME, ledger.apply, ledger.TABLES, ledger.INDEXES),
)


@dataclass
class Runtime:
    settings: Settings
    topics: Topics
    partitions: int
    pool: asyncpg.Pool
    gateway: CommandGateway
    watermarks: Watermarks
    view: CampaignView
    offsets: AIOKafkaConsumer  # reads end offsets (of committed events), for lag
    appended: AIOKafkaConsumer  # reads high watermarks (every event appended), to catch up
    components: list[Supervised]
    stripe_sink: WebhookSink
    decider: Writers | None
    throttle: Throttle
    contact_ingest: ContactIngest

    async def event_ends(self) -> dict[int, int]:
        """The event topic's committed end offset per partition (Kafka)."""
        tps = [TopicPartition(self.topics.events.name, p) for p in range(self.partitions)]
        ends = await self.offsets.end_offsets(tps)
        return {tp.partition: at for tp, at in ends.items()}

    async def projected(self) -> dict[str, dict[int, int]]:
        """Each projection's stored next offset per partition (PostgreSQL)."""
        async with self.pool.acquire() as conn:
            return {
                p.name: await stored_offsets(conn, p.name, self.topics.events.name)
                for p in PROJECTIONS
            }

    def unhealthy_components(self) -> dict[str, str]:
        """The components not running steadily, with what each last failed on."""
        return {c.name: c.problem or "starting" for c in self.components if not c.healthy}


def lag_of(ends: dict[int, int], projected: dict[str, dict[int, int]]) -> dict[str, int]:
    return {
        name: sum(max(0, end - stored.get(p, 0)) for p, end in ends.items())
        for name, stored in projected.items()
    }


async def _without_reset_query(conn: asyncpg.Connection) -> None:
    """Release a connection to the pool without asyncpg's reset query, a round trip on every
    release (every projection batch): our code leaves no session state behind (transactions
    close with their `async with`, advisory locks are released in `finally`, LISTEN has its own
    connection). A transaction left open by a cancelled task is still rolled back."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def _within(stop: Callable[[], Awaitable[object]], what: str) -> None:
    """Stop a client, but not for ever: closing Kafka clients while the broker is away waits
    for requests that will not be answered, and a shutdown must not hang on them."""
    try:
        await asyncio.wait_for(stop(), STOP_TIMEOUT_S)
    except TimeoutError:
        log.warning("runtime.stop_timed_out", what=what, after_s=STOP_TIMEOUT_S)


async def _stop_side_by_side(components: list[Supervised]) -> None:
    """Stop every component at once. Each stop is bounded (`Supervised.stop`), but one after
    another the bounds added up: Ctrl-C took 35 s with the broker not answering, seven
    components giving up after 5 s each."""
    await asyncio.gather(*(component.stop() for component in components))


def _collect_garbage_less_often() -> None:
    """Python's cycle collector scans the young objects every 700 allocations and, now and
    then, every object the process holds: here the campaign view and the deciders' memo,
    which grow with every redemption: a measured cost (docs/performance.md, "Fewer cycle
    collections"). Freeze what start-up loaded (never scanned again) and collect young
    objects 70 times less often; cycles are still collected."""
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


async def _once_reachable(dependency: str, attempt: Callable[[], Awaitable[_T]]) -> _T:
    """`attempt()`, tried again for as long as `dependency` is down. A process started during
    an outage (by its supervisor after a crash, or by hand) comes up when the dependency does,
    instead of exiting (`make chaos` found it exiting: "Application startup failed"). Any
    other error (a wrong password, a mismatched topic layout) is raised at once."""
    backoff = 0.5
    while True:
        try:
            return await attempt()
        except (KafkaError, *DATABASE_UNAVAILABLE) as error:
            log.warning(
                "runtime.waiting_for",
                dependency=dependency,
                error=f"{type(error).__name__}: {error}"[:300],
                retry_in_s=backoff,
            )
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, MAX_BACKOFF_S)


async def _migrated_pool(settings: Settings) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        settings.database_url, min_size=2, max_size=10, reset=_without_reset_query
    )
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
    except BaseException:
        pool.terminate()
        raise
    return pool


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Runtime]:
    """Start everything `settings.components` asks for; stop it all, in reverse, on exit."""
    topics = declare(settings.topic_prefix, settings.partitions)
    bootstrap = settings.kafka_bootstrap_servers
    layout = await _once_reachable(
        "kafka", lambda: ensure_topics(bootstrap, topics, settings.replication_factor)
    )
    partitions = layout[topics.events.name]
    async with contextlib.AsyncExitStack() as stack:
        pool = await _once_reachable("postgres", lambda: _migrated_pool(settings))
        stack.push_async_callback(_within, pool.close, "pool")
        offsets = kafka.reader(bootstrap)
        await offsets.start()
        stack.push_async_callback(_within, offsets.stop, "offsets")
        appended = kafka.reader(bootstrap, committed_only=False)
        await appended.start()
        stack.push_async_callback(_within, appended.stop, "appended")
        watermarks = Watermarks(settings.database_url, topics.events.name, pool)
        await watermarks.start()
        stack.push_async_callback(_within, watermarks.stop, "watermarks")
        same_process = SameProcess()  # this process's gateway to this process's writers
        gateway = CommandGateway(
            bootstrap, topics, layout, settings.command_timeout_s, same_process
        )
        await gateway.start()
        stack.push_async_callback(_within, gateway.stop, "gateway")
        stripe_sink = WebhookSink(
            bootstrap, topics.stripe_events, layout[topics.stripe_events.name]
        )
        await stripe_sink.start()
        stack.push_async_callback(_within, stripe_sink.stop, "stripe_sink")
        snapshots, shared = PostgresSnapshots(pool), SharedStates()
        view_snapshots = Snapshots(snapshots, topics.events.name, STATE_VERSION, shared=shared)
        view = CampaignView(bootstrap, topics, partitions, view_snapshots)
        throttle = Throttle(settings.guessing_limits, pool, settings.database_url)
        components = [
            Supervised("campaign-view", view.run),
            Supervised("checkout-throttle", throttle.run),
            Supervised("loop-lag", loop_lag.watch),
        ]
        decider = None
        if "decider" in settings.components:
            decider = Decider(
                bootstrap,
                topics,
                partitions,
                gateway.answer,
                view.take_committed,
                Snapshots(
                    snapshots, topics.events.name, STATE_VERSION, settings.snapshot_every, shared
                ),
                settings.idempotency_window_s,
                same_process,
            )
            components.append(Supervised("decider", decider.run))
        if "projector" in settings.components:
            runner = ProjectionRunner(
                PROJECTIONS, bootstrap, topics, pool, awaited=watermarks.awaited
            )
            components.append(Supervised("projector", runner.run))
        if "batches" in settings.components:
            batches = CodeBatchRunner(pool, gateway, watermarks, settings.command_timeout_s)
            components.append(Supervised("code-batches", batches.run))
            components.append(Supervised("code-stock", code_stock(bootstrap, topics, pool).run))
        if "stripe" in settings.components:
            stripe = StripeConsumer(bootstrap, topics, pool, gateway.decide)
            components.append(Supervised("stripe-translator", stripe.run))
            if settings.stripe_api_key:
                mirror = MirrorRunner(pool, client_for(settings), settings.stripe_rate_limit)
                components.append(Supervised("stripe-mirror", mirror.run))
        contact_ingest, contacts_parts = await contact_components.start(
            stack, settings, topics, pool, automations.react
        )
        components.extend(contacts_parts)
        if "contacts" in settings.components:
            cap = Cap(settings.automation_contact_cap or None, settings.automation_cap_days * DAY)
            sender = Sender(
                pool, settings.database_url, gateway, view.campaign, view.wait_caught_up, cap
            )
            components.append(Supervised("automation-sender", sender.run))
            components.append(Supervised("broadcasts", BroadcastRunner(pool).run))
        for component in components:
            component.start()
        stack.push_async_callback(_stop_side_by_side, components)
        _collect_garbage_less_often()
        log.info("runtime.started", components=settings.components, partitions=partitions)
        yield Runtime(
            settings,
            topics,
            partitions,
            pool,
            gateway,
            watermarks,
            view,
            offsets,
            appended,
            components,
            stripe_sink,
            decider,
            throttle,
            contact_ingest,
        )
    log.info("runtime.stopped")
