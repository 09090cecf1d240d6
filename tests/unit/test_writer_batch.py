"""The writer engine's pure part, in memory: a batch of commands is decided against a
partition's state into the records of its transaction, and folding those records back gives
the same state; retries are answered from the memo; unreadable commands and commands the
aggregate fails on are parked, and the others decided as usual. No Kafka client is touched."""

from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.checkout import Cart, Customer
from contracts.codec import EVENTS
from contracts.commands import (
    ChangeCampaignStatus,
    Command,
    DistributeCode,
    RedeemCode,
    ReleaseReservation,
    ReserveCode,
    ReverseRedemption,
)
from contracts.envelope import Envelope
from contracts.events import CodeRedeemed, CommandRejected
from contracts.reasons import Reason
from contracts.replies import EventPosition
from contracts.topics import declare
from services.coupons import parked
from services.coupons.bus import kafka
from services.coupons.decider import CampaignAggregate
from services.coupons.domain import campaign as domain
from services.coupons.writer.batch import (
    Batch,
    Decided,
    Decisions,
    Handed,
    KeyReusedOutcome,
    PartitionState,
    Retried,
)
from tests.unit.campaign_commands import CAMPAIGN, define, redeem

PARTITIONS = 3
TOPICS = declare("t.", PARTITIONS)
PARTITION = kafka.partition_for(CAMPAIGN, PARTITIONS)
NOW = datetime(2026, 11, 1, tzinfo=UTC)
AGGREGATE = CampaignAggregate(TOPICS)


def record(offset: int, data: Command, key: str | None = None) -> ConsumerRecord[Any, Any]:
    value = Envelope[Any](
        key=CAMPAIGN, correlation_id="c", idempotency_key=key, data=data
    ).to_bytes()
    return ConsumerRecord(
        TOPICS.commands.name, PARTITION, offset, 0, 0, CAMPAIGN.encode(), value, None, 0, 0, []
    )


def decide(
    commands: list[Command], state: PartitionState | None = None
) -> tuple[Batch, PartitionState]:
    decisions = Decisions(AGGREGATE, TOPICS, PARTITIONS, now=lambda: NOW)
    state = state or PartitionState(AGGREGATE)
    batch = Batch()
    records: list[Any] = [record(offset, command) for offset, command in enumerate(commands)]
    decisions.decide(batch, state, PARTITION, records)
    return batch, state


def appended(batch: Batch) -> list[Envelope[Any]]:
    return [EVENTS.decode(s.value) for s in batch.sends if s.topic == TOPICS.events.name]


def test_a_command_the_domain_fails_on_is_refused_parked_and_the_others_decided(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = domain.decide

    def fails_on_r2(campaign: Any, command: Command, now: Any) -> Any:
        if isinstance(command, RedeemCode) and command.redemption_id == "r2":
            raise OverflowError("date value out of range")
        return real(campaign, command, now)

    monkeypatch.setattr(domain, "decide", fails_on_r2)
    before = parked.PARKED["decider", "unprocessable"]

    batch, state = decide([define(), redeem(1), redeem(2), redeem(3)])

    events = [e.data for e in appended(batch)]
    refused = [e for e in events if isinstance(e, CommandRejected)]
    assert [e.reason for e in refused] == [Reason.UNPROCESSABLE]
    assert [e.redemption_id for e in events if isinstance(e, CodeRedeemed)] == ["r1", "r3"]
    [dead] = [s for s in batch.sends if s.topic == TOPICS.dead_letters.name]
    headers = dict(dead.headers)
    assert headers["reason"] == b"unprocessable" and headers["source_offset"] == b"2"
    assert b"OverflowError" in headers["detail"]
    assert parked.PARKED["decider", "unprocessable"] == before + 1
    campaign = state.states[CAMPAIGN]
    assert campaign.redemptions == 2 and "r2" not in campaign.ledger
    assert len(batch.outcomes) == 4  # every command is answered


def test_retries_are_answered_from_the_memo_and_a_reused_key_is_refused() -> None:
    decisions = Decisions(AGGREGATE, TOPICS, PARTITIONS, now=lambda: NOW)
    state, batch = PartitionState(AGGREGATE), Batch()
    records = [
        record(0, define(), "k0"),
        record(1, redeem(1), "k1"),
        record(2, redeem(1), "k1"),  # a retry
        record(3, redeem(2), "k1"),  # the same key, another request
    ]
    decisions.decide(batch, state, PARTITION, records)
    assert [type(o) for o in batch.outcomes] == [Decided, Decided, Retried, KeyReusedOutcome]
    assert len([e for e in appended(batch) if isinstance(e.data, CodeRedeemed)]) == 1


def test_unreadable_and_misdirected_commands_are_parked_and_handed_ones_dropped() -> None:
    decisions = Decisions(AGGREGATE, TOPICS, PARTITIONS, now=lambda: NOW)
    state, batch = PartitionState(AGGREGATE), Batch()
    other = next(k for k in ("a", "b", "c", "d", "e") if kafka.partition_for(k, 3) != PARTITION)
    misdirected = Envelope[Any](key=other, correlation_id="c", data=redeem(1)).to_bytes()
    garbage = ConsumerRecord(TOPICS.commands.name, PARTITION, 0, 0, 0, None, b"{", None, 0, 0, [])
    wrong = ConsumerRecord(
        TOPICS.commands.name, PARTITION, 1, 0, 0, None, misdirected, None, 0, 0, []
    )
    decisions.decide(batch, state, PARTITION, [garbage, wrong, Handed(b"{", b"addr")])
    reasons = [dict(s.headers)["reason"] for s in batch.sends]
    assert reasons == [b"invalid_json", b"wrong_partition"]
    assert batch.outcomes == [] and len(batch.records) == 3  # the offsets still move on


COMMANDS = st.one_of(
    st.builds(lambda n, c: redeem(n, f"c{c}"), st.integers(0, 30), st.integers(0, 5)),
    st.builds(
        lambda n: ReverseRedemption(campaign_id=CAMPAIGN, redemption_id=f"r{n}"),
        st.integers(0, 30),
    ),
    st.builds(
        lambda s: ChangeCampaignStatus(campaign_id=CAMPAIGN, status=s),
        st.sampled_from(["active", "paused"]),
    ),
    st.builds(
        lambda c: DistributeCode(campaign_id=CAMPAIGN, distribution_id=f"d{c}", contact_id=f"c{c}"),
        st.integers(0, 5),
    ),
    st.builds(
        lambda n, c: ReserveCode(
            campaign_id=CAMPAIGN,
            reservation_id=f"h{n}",
            code="SPRING",
            customer=Customer(contact_id=f"c{c}"),
            cart=Cart(currency="EUR", amount=1000),
        ),
        st.integers(0, 10),
        st.integers(0, 5),
    ),
    st.builds(
        lambda n: ReleaseReservation(campaign_id=CAMPAIGN, reservation_id=f"h{n}"),
        st.integers(0, 10),
    ),
    st.builds(
        lambda n, h, c: redeem(n, f"c{c}").model_copy(update={"reservation_id": f"h{h}"}),
        st.integers(31, 60),
        st.integers(0, 10),
        st.integers(0, 5),
    ),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(COMMANDS, max_size=40), st.integers(1, 20))
def test_the_records_of_a_batch_fold_back_to_the_state_it_decided(
    commands: list[Command], cap: int
) -> None:
    """Deciding runs the state ahead of the log; the log, folded again as a new owner of the
    partition would, gives exactly that state, memo included, and no cap is exceeded."""
    batch, state = decide([define(max_redemptions=cap), *commands])
    rebuilt = PartitionState(AGGREGATE)
    for offset, envelope in enumerate(appended(batch)):
        rebuilt.apply(envelope, EventPosition(partition=PARTITION, offset=offset))
    assert rebuilt.states == state.states
    campaign = state.states[CAMPAIGN]
    assert campaign.redemptions + len(campaign.holds) <= cap  # holds count as redemptions
    logged = {envelope.causation_id for envelope in appended(batch)}
    for outcome in batch.outcomes:  # what left no event (a no-op) is decided again, harmlessly
        if outcome.command.id not in logged:
            continue
        first, again = state.memo.get(outcome.command), rebuilt.memo.get(outcome.command)
        assert first is not None and again is not None
        assert (first.outcome, first.reason) == (again.outcome, again.reason)
