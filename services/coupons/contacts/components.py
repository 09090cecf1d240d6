"""Starts the contacts side (issue 18) for the composition root: the HTTP ingest producer
always, and with the `contacts` component the processor (`COUPONS_CONTACT_CONSUMERS` of them),
the coupon facts, the timer loop, the outbox relay and the backfill runner, each supervised."""

import contextlib

import asyncpg

from contracts.topics import Topics
from services.coupons.contacts.backfill import BackfillRunner
from services.coupons.contacts.coupon_facts import coupon_facts
from services.coupons.contacts.dedupe_window import DedupeWindow
from services.coupons.contacts.ingest import ContactIngest
from services.coupons.contacts.processor import contacts_processor
from services.coupons.contacts.reactions import Reaction
from services.coupons.contacts.relay import OutboxRelay
from services.coupons.contacts.segment_sizes import SegmentSizes
from services.coupons.contacts.timers import TimerLoop
from services.coupons.settings import Settings
from services.coupons.supervise import Supervised


async def start(
    stack: contextlib.AsyncExitStack,
    settings: Settings,
    topics: Topics,
    pool: asyncpg.Pool,
    react: Reaction | None = None,
) -> tuple[ContactIngest, list[Supervised]]:
    """`react` sees every contact settled by events, coupon facts and timers (automations)."""
    bootstrap = settings.kafka_bootstrap_servers
    ingest = ContactIngest(bootstrap, topics.contact_events)
    await ingest.start()
    stack.push_async_callback(ingest.stop)
    if "contacts" not in settings.components:
        return ingest, []
    processors = [  # one consumer group: each takes a share of the partitions
        Supervised(
            "contacts" if n == 0 else f"contacts-{n + 1}",
            contacts_processor(bootstrap, topics, pool, react).run,
        )
        for n in range(settings.contact_consumers)
    ]
    return ingest, [
        *processors,
        Supervised("contact-coupon-facts", coupon_facts(bootstrap, topics, pool, react).run),
        Supervised("contact-timers", TimerLoop(settings.database_url, pool, react).run),
        Supervised(
            "segment-relay", OutboxRelay(bootstrap, settings.database_url, topics, pool).run
        ),
        Supervised("segment-backfill", BackfillRunner(pool).run),
        Supervised("contact-dedupe-window", DedupeWindow(pool, settings.contact_dedupe_days).run),
        Supervised("segment-sizes", SegmentSizes(pool).run),
    ]
