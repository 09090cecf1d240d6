"""A synthetic, valid event stream for the projections: campaigns, unique codes,
distributions, redemptions (attributed and direct), reversals, partial refunds, refusals, and
now and then an unreadable message. Produced straight to the event topic, as the decider would
append it; used by the projection benchmark and the rebuild tests."""

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaProducer

from contracts.envelope import Envelope
from contracts.events import (
    CampaignDefined,
    CodeDistributed,
    CodeRedeemed,
    CodesAdded,
    CommandRejected,
    Event,
    RedemptionRefunded,
    RedemptionReversed,
)
from contracts.money import AmountOff
from contracts.reasons import Reason
from contracts.rules import Limits

CHANNELS = ("sequence", "broadcast", "partner", "email")
UNREADABLE = b'{"not": "an envelope"}'


def mixed_events(count: int, campaigns: int = 20, seed: int = 7) -> Iterator[Envelope[Event]]:
    """`count` events (besides one definition per campaign), spread over a few days."""
    rng = random.Random(seed)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    ids = [f"bench-{seed}-{i}" for i in range(campaigns)]
    redeemed: dict[str, list[CodeRedeemed]] = {c: [] for c in ids}
    distributed: dict[str, list[tuple[str, str]]] = {c: [] for c in ids}

    def envelope(key: str, data: Event, n: int) -> Envelope[Event]:
        at = start + timedelta(seconds=n * 5)
        return Envelope[Event](key=key, correlation_id=f"w{n}", occurred_at=at, data=data)

    for n, cid in enumerate(ids):
        limits = Limits(max_redemptions=1_000_000, budget=10**12, per_contact=None)
        discount = AmountOff(amount_off=500, currency="EUR")
        yield envelope(
            cid, CampaignDefined(campaign_id=cid, name=cid, discount=discount, limits=limits), n
        )
        codes = tuple(f"{cid}-C{i}".upper().replace("-", "") for i in range(50))
        yield envelope(cid, CodesAdded(campaign_id=cid, batch_id=cid, chunk=0, codes=codes), n)
    for n in range(count):
        cid = rng.choice(ids)
        roll = rng.random()
        if roll < 0.35:
            contact = f"contact-{rng.randrange(5000)}"
            code = f"{cid}-C{rng.randrange(50)}".upper().replace("-", "")
            distributed[cid].append((code, contact))
            data: Event = CodeDistributed(
                campaign_id=cid,
                distribution_id=f"{cid}-d{n}",
                code=code,
                contact_id=contact,
                email=None,
                channel=rng.choice(CHANNELS),
                source_ref=f"flow-{rng.randrange(4)}",
                expires_at=None,
            )
        elif roll < 0.75:
            if distributed[cid] and rng.random() < 0.7:
                code, contact = rng.choice(distributed[cid])
            else:
                code = f"{cid}-C{rng.randrange(50)}".upper().replace("-", "")
                contact = f"contact-{rng.randrange(5000)}"
            amount = rng.randrange(1000, 20000)
            data = CodeRedeemed(
                campaign_id=cid,
                redemption_id=f"{cid}-r{n}",
                code=code,
                contact_id=contact,
                order_ref=f"inv-{n}",
                currency="EUR",
                amount=amount,
                discount=500,
                total=amount - 500,
                source=rng.choice(("checkout", "stripe")),
            )
            redeemed[cid].append(data)
        elif roll < 0.82 and redeemed[cid]:
            done = redeemed[cid].pop(rng.randrange(len(redeemed[cid])))
            data = RedemptionReversed(
                campaign_id=cid,
                redemption_id=done.redemption_id,
                contact_id=done.contact_id,
                discount=done.discount,
                reason="refund",
            )
        elif roll < 0.88 and redeemed[cid]:
            done = rng.choice(redeemed[cid])
            data = RedemptionRefunded(
                campaign_id=cid,
                redemption_id=done.redemption_id,
                contact_id=done.contact_id,
                refund_id=f"re-{n}",
                currency="EUR",
                refunded=100,
            )
        else:
            data = CommandRejected(
                campaign_id=cid,
                command_type="coupon.redeem_code.v1",
                reason=rng.choice((Reason.EXPIRED, Reason.PER_CONTACT_LIMIT, Reason.EXHAUSTED)),
                detail="",
            )
        yield envelope(cid, data, campaigns + n)


async def produce(
    producer: AIOKafkaProducer, topic: str, events: Iterator[Envelope[Event]], unreadable: int = 0
) -> int:
    """Send every event (keyed by campaign, as the decider does) and `unreadable` junk
    messages; returns how many were sent."""
    sent = 0
    for envelope in events:
        await producer.send(topic, envelope.to_bytes(), key=envelope.key.encode())
        sent += 1
    for _ in range(unreadable):
        await producer.send(topic, UNREADABLE, key=b"junk")
    await producer.flush()
    return sent + unreadable
