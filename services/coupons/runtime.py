"""The composition root: builds every connection and component from Settings, in the
application's lifespan (never at import time), and tears them down in reverse order."""

import contextlib
import gc
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts.topics import Topics, declare
from projections import campaigns, contacts, ledger, usage
from projections.migrate import migrate
from projections.offsets import stored_offsets
from projections.runner import Projection, ProjectionRunner
from projections.watermarks import Watermarks
from services.coupons.bus import kafka
from services.coupons.bus.gateway import CommandGateway
from services.coupons.bus.topics import ensure_topics
from services.coupons.campaign_view import CampaignView
from services.coupons.code_batches import CodeBatchRunner
from services.coupons.contacts import components as contact_components
from services.coupons.contacts.ingest import ContactIngest
from services.coupons.decider import Decider
from services.coupons.settings import Settings
from services.coupons.stripe.client import client_for
from services.coupons.stripe.consumer import StripeConsumer
from services.coupons.stripe.mirror import MirrorRunner
from services.coupons.stripe.sink import WebhookSink
from services.coupons.supervise import Supervised

log = structlog.get_logger(__name__)

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
    contact_ingest: ContactIngest

    async def lag(self) -> dict[str, int]:
        """Events appended but not yet applied, per projection (all partitions summed)."""
        tps = [TopicPartition(self.topics.events.name, p) for p in range(self.partitions)]
        ends = await self.offsets.end_offsets(tps)
        lags = {}
        async with self.pool.acquire() as conn:
            for projection in PROJECTIONS:
                stored = await stored_offsets(conn, projection.name, self.topics.events.name)
                lags[projection.name] = sum(
                    max(0, ends[tp] - stored.get(tp.partition, 0)) for tp in tps
                )
        return lags

    def unhealthy_components(self) -> list[str]:
        return [c.name for c in self.components if not c.healthy]


async def _without_reset_query(conn: asyncpg.Connection) -> None:
    """Release a connection to the pool without asyncpg's reset query, a round trip on every
    release (every projection batch): our code leaves no session state behind (transactions
    close with their `async with`, advisory locks are released in `finally`, LISTEN has its own
    connection). A transaction left open by a cancelled task is still rolled back."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


def _collect_garbage_less_often() -> None:
    """Python's cycle collector scans the young objects every 700 allocations and, now and
    then, every object the process holds: here the campaign view and the deciders' memo,
    which grow with every redemption. In `bench/checkout.py` (medians of 3) redemptions went
    from 441/s with p99 535 ms to 526/s and 211 ms with this. Freeze what start-up loaded
    (never scanned again) and collect young objects 70 times less often; cycles are still
    collected."""
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Runtime]:
    """Start everything `settings.components` asks for; stop it all, in reverse, on exit."""
    topics = declare(settings.topic_prefix, settings.partitions)
    bootstrap = settings.kafka_bootstrap_servers
    layout = await ensure_topics(bootstrap, topics, settings.replication_factor)
    partitions = layout[topics.events.name]
    async with contextlib.AsyncExitStack() as stack:
        pool = await asyncpg.create_pool(
            settings.database_url, min_size=2, max_size=10, reset=_without_reset_query
        )
        stack.push_async_callback(pool.close)
        async with pool.acquire() as conn:
            await migrate(conn)
        offsets = kafka.reader(bootstrap)
        await offsets.start()
        stack.push_async_callback(offsets.stop)
        appended = kafka.reader(bootstrap, committed_only=False)
        await appended.start()
        stack.push_async_callback(appended.stop)
        watermarks = Watermarks(settings.database_url, topics.events.name, pool)
        await watermarks.start()
        stack.push_async_callback(watermarks.stop)
        gateway = CommandGateway(bootstrap, topics, layout, settings.command_timeout_s)
        await gateway.start()
        stack.push_async_callback(gateway.stop)
        stripe_sink = WebhookSink(
            bootstrap, topics.stripe_events, layout[topics.stripe_events.name]
        )
        await stripe_sink.start()
        stack.push_async_callback(stripe_sink.stop)
        view = CampaignView(bootstrap, topics, partitions)
        components = [Supervised("campaign-view", view.run)]
        if "decider" in settings.components:
            decider = Decider(bootstrap, topics, partitions, gateway.answer, view.take_committed)
            components.append(Supervised("decider", decider.run))
        if "projector" in settings.components:
            runner = ProjectionRunner(PROJECTIONS, bootstrap, topics, pool)
            components.append(Supervised("projector", runner.run))
        if "batches" in settings.components:
            batches = CodeBatchRunner(pool, gateway, watermarks, settings.command_timeout_s)
            components.append(Supervised("code-batches", batches.run))
        if "stripe" in settings.components:
            stripe = StripeConsumer(bootstrap, topics, pool, gateway.decide)
            components.append(Supervised("stripe-translator", stripe.run))
            if settings.stripe_api_key:
                mirror = MirrorRunner(pool, client_for(settings), settings.stripe_rate_limit)
                components.append(Supervised("stripe-mirror", mirror.run))
        contact_ingest, contacts_parts = await contact_components.start(
            stack, settings, topics, pool
        )
        components.extend(contacts_parts)
        for component in components:
            component.start()
            stack.push_async_callback(component.stop)
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
            contact_ingest,
        )
    log.info("runtime.stopped")
