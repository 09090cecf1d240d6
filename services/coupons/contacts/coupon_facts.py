"""Coupon facts: our own event log (`coupons.events.v1`) fed back into contact profiles, so
"redeemed a coupon in the last 90 days" or "received a code of campaign X" can select or
exclude people. Distributions count as received, redemptions as redeemed (with the discount
and the revenue paid), reversals and refunds take theirs back. Its own consumer group and
offsets name (`contact_coupon_facts`); deduped by envelope id like lifecycle events. An
unreadable event is skipped here: the projection runner dead-letters it already."""

import time
from collections import defaultdict
from dataclasses import dataclass, replace

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer

from contracts.codec import EVENTS, MalformedMessage
from contracts.envelope import Envelope
from contracts.events import (
    CodeDistributed,
    CodeRedeemed,
    Event,
    RedemptionRefunded,
    RedemptionReversed,
)
from contracts.topics import Topics
from projections.db import Connection
from services.coupons.contacts import store
from services.coupons.contacts.consumer import OffsetConsumer, Records
from services.coupons.contacts.processor import fresh_ids
from services.coupons.contacts.profile import COUPON_INPUTS, CouponFacts, Profile, epoch
from services.coupons.contacts.reactions import Reaction

log = structlog.get_logger(__name__)

NAME = "contact_coupon_facts"
MAX_CAMPAIGNS = 1000
BATCH_WAIT_MS = 100
"""How long a fetch may wait for more of our events: a distribution reaches the profile up
to this much later, and the poll (a transaction of some ten statements) is not run for
every transaction the deciders commit (docs/performance/automations.md)."""
CouponEvent = CodeDistributed | CodeRedeemed | RedemptionReversed | RedemptionRefunded


@dataclass(frozen=True)
class Fed:
    id: str
    at: int
    event: CouponEvent


def coupon_facts(
    bootstrap: str, topics: Topics, pool: asyncpg.Pool, react: Reaction | None = None
) -> OffsetConsumer[Fed]:
    async def decode(_: AIOKafkaProducer, records: Records) -> list[Fed]:
        found = []
        for record in records:
            try:
                envelope: Envelope[Event] = EVENTS.decode(record.value)
            except MalformedMessage:
                continue
            if isinstance(envelope.data, CouponEvent):
                at = epoch(envelope.occurred_at)
                found.append(Fed(f"coupon:{envelope.id}", at, envelope.data))
        return found

    async def applied(conn: Connection, fed: list[Fed]) -> int:
        return await apply(conn, fed, react)

    return OffsetConsumer(
        NAME, topics.events.name, bootstrap, pool, decode, applied, batch_wait_ms=BATCH_WAIT_MS
    )


def fold_coupon(facts: CouponFacts, event: CouponEvent, at: int) -> CouponFacts:
    """The coupon facts after one of our events. Pure."""
    match event:
        case CodeDistributed():
            campaigns = facts.campaigns
            if event.campaign_id not in campaigns and len(campaigns) < MAX_CAMPAIGNS:
                campaigns = tuple(sorted((*campaigns, event.campaign_id)))
            return replace(facts, received=facts.received + 1, campaigns=campaigns)
        case CodeRedeemed():
            last = at if facts.last_redeemed_at is None else max(facts.last_redeemed_at, at)
            return replace(
                facts,
                redeemed=facts.redeemed + 1,
                last_redeemed_at=last,
                discount=facts.discount + event.discount,
                revenue=facts.revenue + event.total,
            )
        case RedemptionReversed():
            return replace(
                facts,
                redeemed=max(0, facts.redeemed - 1),
                discount=max(0, facts.discount - event.discount),
            )
        case RedemptionRefunded():
            return replace(facts, revenue=max(0, facts.revenue - event.refunded))
    return facts


async def apply(conn: Connection, fed: list[Fed], react: Reaction | None = None) -> int:
    if not fed:
        return 0
    fresh = await fresh_ids(conn, [f.id for f in fed])
    by_contact: dict[str, list[Fed]] = defaultdict(list)
    for item in fed:
        if item.id in fresh:
            fresh.discard(item.id)
            by_contact[item.event.contact_id].append(item)
    if not by_contact:
        return 0
    profiles = await store.lock_profiles(conn, by_contact)
    causes = {}
    inputs: dict[str, frozenset[str] | None] = {}
    for contact_id, found in by_contact.items():
        profile: Profile = profiles[contact_id]
        inputs[contact_id] = None if profile == Profile(contact_id) else COUPON_INPUTS
        facts = profile.coupons
        for item in found:
            facts = fold_coupon(facts, item.event, item.at)
        profiles[contact_id] = replace(profile, coupons=facts)
        causes[contact_id] = found[-1].id
    segments = await store.live_segments(conn)
    now = int(time.time())
    await store.save_profiles(conn, profiles)
    return await store.settle(conn, profiles, segments, causes, now, react=react, touched=inputs)
