import json
from decimal import Decimal

import pytest
from pydantic import TypeAdapter, ValidationError

from contracts.codec import COMMANDS, EVENTS, Codec, MalformedMessage
from contracts.commands import DefineCampaign
from contracts.envelope import Envelope
from contracts.events import CampaignDefined, Event
from contracts.money import AmountOff, PercentOff
from contracts.topics import FOREVER, declare
from contracts.upcasting import upcast


def define(**overrides: object) -> Envelope[DefineCampaign]:
    data = {
        "campaign_id": "c1",
        "name": "Trial rescue",
        "discount": {"kind": "percent", "percent_off": "20"},
    }
    return Envelope[DefineCampaign](
        key="c1", correlation_id="corr-1", data=DefineCampaign.model_validate({**data, **overrides})
    )


def test_envelope_round_trips_with_literal_type_name() -> None:
    sent = define()
    raw = json.loads(sent.to_bytes())
    assert raw["type"] == "coupon.define_campaign.v1"
    assert raw["data"]["type"] == "coupon.define_campaign.v1"
    assert COMMANDS.decode(sent.to_bytes()) == sent


def test_messages_are_frozen() -> None:
    envelope = define()
    with pytest.raises(ValidationError):
        envelope.key = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "empty_message"),
        (b"\xff\xfe", "invalid_json"),
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "not_an_envelope"),
        (b'{"key": "c1"}', "not_an_envelope"),
        (
            b'{"key": "c1", "correlation_id": "x", "data": {"type": "coupon.nope.v1"}}',
            "schema_violation",
        ),
    ],
)
def test_unreadable_bytes_get_a_stable_reason(raw: bytes | None, reason: str) -> None:
    with pytest.raises(MalformedMessage) as caught:
        EVENTS.decode(raw)
    assert caught.value.reason == reason


def test_event_topic_rejects_a_command() -> None:
    with pytest.raises(MalformedMessage) as caught:
        EVENTS.decode(define().to_bytes())
    assert caught.value.reason == "schema_violation"


def test_upcasters_chain_old_versions_to_the_current_shape() -> None:
    """A stored v0 payload (no discount kind, percent as a float) reads as today's v1."""
    chain = {
        "coupon.campaign_defined.v-1": lambda d: {
            **{k: v for k, v in d.items() if k != "title"},
            "type": "coupon.campaign_defined.v0",
            "name": d["title"],
        },
        "coupon.campaign_defined.v0": lambda d: {
            **{k: v for k, v in d.items() if k != "percent"},
            "type": "coupon.campaign_defined.v1",
            "discount": {"kind": "percent", "percent_off": str(d["percent"])},
        },
    }
    stored = {
        "key": "c1",
        "correlation_id": "x",
        "data": {
            "type": "coupon.campaign_defined.v-1",
            "campaign_id": "c1",
            "title": "Old",
            "percent": 15,
        },
    }
    codec: Codec[Envelope[Event]] = Codec(TypeAdapter(Envelope[Event]), chain)
    event = codec.decode(json.dumps(stored).encode()).data
    assert event == CampaignDefined(
        campaign_id="c1", name="Old", discount=PercentOff(percent_off=Decimal(15))
    )


def test_upcasting_refuses_a_cycle() -> None:
    cycle = {"a": lambda d: {**d, "type": "b"}, "b": lambda d: {**d, "type": "a"}}
    with pytest.raises(ValueError, match="longer than"):
        upcast({"type": "a"}, cycle)


@pytest.mark.parametrize(
    "discount",
    [
        {"kind": "percent", "percent_off": "0"},
        {"kind": "percent", "percent_off": "100.01"},
        {"kind": "percent", "percent_off": "12.345"},
        {"kind": "percent", "percent_off": "10", "max_amount_off": 500},
        {"kind": "amount", "amount_off": 0, "currency": "EUR"},
        {"kind": "amount", "amount_off": 100, "currency": "eur"},
        {"kind": "amount", "amount_off": 100},
        {"kind": "bogo"},
    ],
)
def test_invalid_discounts_are_refused(discount: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        define(discount=discount)


def test_valid_discounts() -> None:
    assert define(
        discount={"kind": "amount", "amount_off": 500, "currency": "EUR"}
    ).data.discount == AmountOff(amount_off=500, currency="EUR")
    capped = define(
        discount={
            "kind": "percent",
            "percent_off": "12.5",
            "max_amount_off": 1000,
            "currency": "USD",
        }
    )
    assert capped.data.discount == PercentOff(
        percent_off=Decimal("12.5"), max_amount_off=1000, currency="USD"
    )


def test_event_log_is_kept_forever_and_command_and_event_topics_align() -> None:
    topics = declare("t-", 4)
    assert topics.events.retention_ms == FOREVER
    assert topics.events.config(3)["retention.ms"] == "-1"
    assert topics.events.config(3)["cleanup.policy"] == "delete"
    assert topics.events.config(3)["min.insync.replicas"] == "2"
    assert topics.commands.partitions == topics.events.partitions == 4
    assert all(t.name.startswith("t-") for t in topics.all())
