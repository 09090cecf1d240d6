"""A command the domain fails on (a bug, a value it cannot handle) is refused and parked; the
partition's other commands are decided as usual. The Kafka clients are not touched: a batch is
decided in memory before its transaction."""

from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord

from contracts.checkout import Cart, Customer
from contracts.codec import EVENTS
from contracts.commands import Command, DefineCampaign, RedeemCode
from contracts.envelope import Envelope
from contracts.events import CodeRedeemed, CommandRejected
from contracts.money import AmountOff
from contracts.reasons import Reason
from contracts.topics import declare
from projections import parked
from services.coupons import decider as module
from services.coupons.bus import kafka

PARTITIONS = 3
TOPICS = declare("t.", PARTITIONS)
CAMPAIGN = "spring"
PARTITION = kafka.partition_for(CAMPAIGN, PARTITIONS)


def record(offset: int, data: Command) -> ConsumerRecord[Any, Any]:
    value = Envelope[Any](key=CAMPAIGN, correlation_id="c", data=data).to_bytes()
    return ConsumerRecord(
        TOPICS.commands.name, PARTITION, offset, 0, 0, CAMPAIGN.encode(), value, None, 0, 0, []
    )


def redeem(n: int) -> RedeemCode:
    return RedeemCode(
        campaign_id=CAMPAIGN,
        redemption_id=f"r{n}",
        code="SPRING",
        customer=Customer(contact_id=f"c{n}"),
        cart=Cart(currency="EUR", amount=1000),
        order_ref=f"o{n}",
    )


def test_a_command_the_domain_fails_on_is_refused_parked_and_the_others_decided(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = module.aggregate.decide

    def fails_on_r2(campaign: Any, command: Command, now: Any) -> Any:
        if isinstance(command, RedeemCode) and command.redemption_id == "r2":
            raise OverflowError("date value out of range")
        return real(campaign, command, now)

    monkeypatch.setattr(module.aggregate, "decide", fails_on_r2)
    decider = module.Decider("127.0.0.1:1", TOPICS, PARTITIONS)
    writer = module.Writer(PARTITION, (None, None), module.PartitionState(), None)  # type: ignore[arg-type]
    define = DefineCampaign(
        campaign_id=CAMPAIGN,
        name="Spring",
        code="SPRING",
        discount=AmountOff(amount_off=100, currency="EUR"),
        limits={"per_contact": None},
    )
    writer.waiting = [
        record(0, define),
        record(1, redeem(1)),
        record(2, redeem(2)),
        record(3, redeem(3)),
    ]
    before = parked.PARKED["decider", "unprocessable"]

    decider._decide(writer)

    sends = writer.decided.sends
    events = [EVENTS.decode(s.value).data for s in sends if s.topic == TOPICS.events.name]
    refused = [e for e in events if isinstance(e, CommandRejected)]
    assert [e.reason for e in refused] == [Reason.UNPROCESSABLE]
    assert [e.redemption_id for e in events if isinstance(e, CodeRedeemed)] == ["r1", "r3"]
    [dead] = [s for s in sends if s.topic == TOPICS.dead_letters.name]
    headers = dict(dead.headers)
    assert headers["reason"] == b"unprocessable" and headers["source_offset"] == b"2"
    assert b"OverflowError" in headers["detail"]
    assert parked.PARKED["decider", "unprocessable"] == before + 1
    campaign = writer.state.campaigns[CAMPAIGN]
    assert campaign.redemptions == 2 and "r2" not in campaign.ledger
    assert len(writer.decided.outcomes) == 4  # every command is answered
