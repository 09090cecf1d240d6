"""The events `bench/history.py` seeds (a campaign per partition, then redemptions by 100,000
contacts, each with its own idempotency key, at the times asked for), and its in-process
measures of a decider's partition state: its memory (`--in-process N`) and its snapshot
codec (`--restore N`). Copy both files into another checkout to measure that one."""

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.commands import DefineCampaign
from contracts.envelope import Envelope
from contracts.events import CodeRedeemed
from contracts.money import AmountOff
from contracts.rules import Limits
from contracts.topics import declare
from services.coupons.bus import kafka
from services.coupons.domain import campaign

PARTITIONS = 6
CONTACTS = 100_000


def campaigns() -> dict[int, str]:
    """A campaign id for each partition."""
    found: dict[int, str] = {}
    i = 0
    while len(found) < PARTITIONS:
        key = f"bench-{i}"
        found.setdefault(kafka.partition_for(key, PARTITIONS), key)
        i += 1
    return found


def redemption_template(campaign_id: str) -> str:
    """A CodeRedeemed event's JSON with `{n}`, `{contact}`, `{uid}` and `{at}` (when it
    occurred, ISO 8601) to fill in."""
    data = CodeRedeemed(
        campaign_id=campaign_id,
        redemption_id="RID",
        code="BENCH",
        contact_id="CONTACT",
        order_ref="ORDER",
        currency="EUR",
        amount=2000,
        discount=500,
        total=1500,
    )
    envelope = Envelope[CodeRedeemed](
        id=uuid.UUID(int=0),
        key=campaign_id,
        correlation_id="CORR",
        idempotency_key="IKEY",
        request_hash="f" * 64,
        actor="bench",
        data=data,
        occurred_at=MARK,
    )
    text = envelope.model_dump_json().replace("{", "{{").replace("}", "}}")
    for marker, field in (
        (MARK.isoformat().replace("+00:00", "Z"), "{at}"),
        ("00000000-0000-0000-0000-000000000000", "{uid}"),
        ('"RID"', '"r{n}"'),
        ('"CONTACT"', '"c{contact}"'),
        ('"ORDER"', '"o{n}"'),
        ('"CORR"', '"x{n}"'),
        ('"IKEY"', '"k{n}"'),
        ("f" * 64, "{n:064x}"),
    ):
        text = text.replace(marker, field)
    return text


MARK = datetime(2001, 2, 3, 4, 5, 6, 789012, tzinfo=UTC)
"""A date found once in the template: where `{at}` goes."""


def occurred(n: int, count: int, days: float, end: datetime) -> str:
    """When the `n`th of `count` redemptions occurred: spread evenly over the `days` before
    `end`, or all at `end` with no days."""
    at = end - timedelta(days=days * (count - n) / count) if days else end
    return at.isoformat().replace("+00:00", "Z")


def defined(campaign_id: str, at: datetime) -> bytes:
    command = DefineCampaign(
        campaign_id=campaign_id,
        name=campaign_id,
        code="BENCH",
        discount=AmountOff(amount_off=500, currency="EUR"),
        limits=Limits(per_contact=None),
    )
    [event] = campaign.decide(None, command, at)
    envelope = Envelope[Any](key=campaign_id, correlation_id="define", data=event, occurred_at=at)
    return envelope.to_bytes()


def folded_state(count: int) -> tuple[Any, list[Any]]:
    """A decider's partition state (campaign and memo) with `count` redemptions of 100,000
    contacts folded in process (decoded from the same JSON the log holds), compacted every
    `long_folds.COMPACT_EVERY` as a fold from the log is, and some of the events folded
    (every 97th)."""
    from contracts.codec import EVENTS
    from contracts.replies import EventPosition
    from services.coupons import long_folds
    from services.coupons.decider import CampaignAggregate
    from services.coupons.writer.batch import PartitionState

    campaign_id = campaigns()[0]
    template = redemption_template(campaign_id)
    state = PartitionState(CampaignAggregate(declare("bench.", PARTITIONS)))
    now = datetime.now(UTC)
    at = occurred(0, 1, 0, now)
    state.apply(EVENTS.decode(defined(campaign_id, now)), EventPosition(partition=0, offset=0))
    kept = []
    for n in range(count):
        value = template.format(n=n, contact=n % CONTACTS, uid=uuid.UUID(int=n + 1), at=at)
        event = EVENTS.decode(value.encode())
        state.apply(event, EventPosition(partition=0, offset=n + 1))
        if n % 97 == 0:
            kept.append(event)
        if n % long_folds.COMPACT_EVERY == long_folds.COMPACT_EVERY - 1:
            for _ in long_folds.compaction(state.states, state.memo):
                pass
    return state, kept


def fold_memory(count: int) -> None:
    """Bytes per redemption of a decider's partition state (campaign and memo), in process:
    `count` redemptions folded, traced with tracemalloc."""
    import tracemalloc

    tracemalloc.start()
    started = time.process_time()
    state, kept = folded_state(count)
    cpu = time.process_time() - started
    del kept  # not part of the state
    grown, peak = tracemalloc.get_traced_memory()
    print(f"{count:,} redemptions of {CONTACTS:,} contacts folded: {grown / count:,.0f} bytes"
          f" each ({grown / 2**20:,.0f} MiB; at the most {peak / count:,.0f}), memo"
          f" ({len(state.memo):,} keys) and campaign; {cpu:.1f} s CPU (traced)")  # fmt: skip


def restore_cost(count: int) -> None:
    """A decider's partition state of `count` redemptions, every key within the memo's window,
    through its snapshot codec, in process (copy this file into another checkout to measure
    that one): CPU seconds to encode it, and to read it back as a restart does (the states and
    the memo decoded, less PostgreSQL's part), and a lookup of a restored key."""
    import gc

    from services.coupons.writer import snapshot_codec
    from services.coupons.writer.batch import PartitionState

    state, events = folded_state(count)
    gc.freeze()  # as the service does once started (`runtime._collect_garbage_less_often`)
    gc.set_threshold(50_000, 50, 100)
    started = time.process_time()
    chunks = list(snapshot_codec.encode(state.states, state.memo.buckets()))
    encoded = time.process_time() - started
    started = time.process_time()
    states, memo = snapshot_codec.StatesDecoder(), snapshot_codec.MemoDecoder()
    for chunk in chunks:
        (states if chunk.kind == "state" else memo).feed(chunk.body, chunk.checksum)
    restored = PartitionState(state.aggregate)
    restored.states = states.finish()
    restored.memo.restore(memo.finish())
    decoded = time.process_time() - started
    started = time.process_time()
    assert all(restored.memo.get(e) == state.memo.get(e) for e in events)
    lookup_us = (time.process_time() - started) / len(events) * 1e6
    size = sum(len(c.body) for c in chunks)
    print(f"{count:,} redemptions (keys in the window), CPU s: encode {encoded:.2f}, read back"
          f" {decoded:.2f}; {size / count:.0f} B each in {len(chunks)} chunks; a memo lookup of"
          f" a restored key {lookup_us:.1f} µs")  # fmt: skip
