from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from contracts.commands import DefineCampaign
from contracts.envelope import Envelope
from contracts.events import CampaignDefined, CommandRejected, Event
from contracts.money import AmountOff
from contracts.reasons import Reason
from contracts.replies import EventPosition
from services.coupons.domain.campaign import Campaign, decide, evolve
from services.coupons.domain.idempotency import KeyReused, Memo

NOW = datetime(2026, 11, 1, tzinfo=UTC)
FIVE_EUR = AmountOff(amount_off=500, currency="EUR")


def command(
    name: str = "A", key: str | None = "k1", campaign_id: str = "c1"
) -> Envelope[DefineCampaign]:
    return Envelope[DefineCampaign](
        key=campaign_id,
        correlation_id="x",
        idempotency_key=key,
        data=DefineCampaign(campaign_id=campaign_id, name=name, discount=FIVE_EUR),
    )


def answer(cmd: Envelope[DefineCampaign], event: Event) -> Envelope[Event]:
    from services.coupons.domain.idempotency import request_hash

    return Envelope[Event](
        key=cmd.key,
        correlation_id="x",
        idempotency_key=cmd.idempotency_key,
        request_hash=request_hash(cmd.data),
        data=event,
    )


def test_defining_a_new_campaign() -> None:
    events = decide(None, command().data)
    assert events == [CampaignDefined(campaign_id="c1", name="A", discount=FIVE_EUR)]
    assert evolve(None, events[0], NOW) == Campaign("c1", "A", FIVE_EUR, NOW)


def test_defining_an_existing_campaign_is_refused_with_a_reason() -> None:
    existing = Campaign("c1", "A", FIVE_EUR, NOW)
    [event] = decide(existing, command(name="B").data)
    assert isinstance(event, CommandRejected)
    assert event.reason is Reason.CAMPAIGN_EXISTS
    assert evolve(existing, event, NOW) == existing


def test_memo_answers_a_retry_with_the_first_outcome() -> None:
    memo, first = Memo(), command()
    assert memo.recall(first) is None
    events = decide(None, first.data)
    memo.begin(first, events)
    memo.place(answer(first, events[0]), EventPosition(partition=1, offset=7))
    prior = memo.recall(command())  # same key, same body, new envelope id
    assert prior is not None
    assert prior.outcome == "accepted"
    assert prior.events == (EventPosition(partition=1, offset=7),)


def test_memo_refuses_the_same_key_with_another_body() -> None:
    memo, first = Memo(), command()
    memo.begin(first, decide(None, first.data))
    try:
        memo.recall(command(name="other"))
    except KeyReused:
        return
    raise AssertionError("a reused key with a different body must be refused")


def test_memo_rebuilt_from_the_log_equals_the_live_memo() -> None:
    live, rebuilt = Memo(), Memo()
    cmd = command()
    events = decide(None, cmd.data)
    live.begin(cmd, events)
    for offset, event in enumerate(events):
        live.place(answer(cmd, event), EventPosition(partition=0, offset=offset))
        rebuilt.replay(answer(cmd, event), EventPosition(partition=0, offset=offset))
    assert live.get(cmd) == rebuilt.get(cmd)


names = st.sampled_from(["A", "B"])
keys = st.sampled_from(["k1", "k2", "k3", None])


@given(st.lists(st.tuples(names, keys), max_size=30))
def test_any_command_sequence_defines_a_campaign_once_and_folds_back(
    sequence: list[tuple[str, str | None]],
) -> None:
    """Whatever arrives, one campaign is defined at most once, its first definition wins,
    and folding the emitted events reproduces the state the decider held."""
    state: Campaign | None = None
    log: list[Event] = []
    for name, key in sequence:
        events = decide(state, command(name, key).data)
        for event in events:
            state = evolve(state, event, NOW)
        log.extend(events)
    defined = [e for e in log if isinstance(e, CampaignDefined)]
    assert len(defined) == (1 if sequence else 0)
    if sequence:
        assert defined[0].name == sequence[0][0]
    folded: Campaign | None = None
    for event in log:
        folded = evolve(folded, event, NOW)
    assert folded == state
