"""Reservations hold a use exactly as a redemption does, end by release, expiry or
redemption, and the writer's timers release them on time."""

from datetime import UTC, datetime, timedelta

from contracts.checkout import Cart, Customer
from contracts.commands import (
    Command,
    DefineCampaign,
    RedeemCode,
    ReleaseReservation,
    ReserveCode,
)
from contracts.events import CodeRedeemed, CodeReserved, CommandRejected, Event
from contracts.money import AmountOff
from contracts.reasons import Reason
from contracts.rules import Limits
from contracts.topics import declare
from services.coupons.decider import CampaignAggregate
from services.coupons.domain.campaign import Campaign, decide, evolve
from services.coupons.writer.timers import Timer, Timers

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def reserve(n: int, contact: str = "", ttl_s: int | None = None) -> ReserveCode:
    return ReserveCode(
        campaign_id="c1",
        reservation_id=f"h{n}",
        code="FLASH",
        customer=Customer(contact_id=contact or f"c{n}"),
        cart=Cart(currency="EUR", amount=2000),
        ttl_s=ttl_s,
    )


def redeem(n: int, contact: str = "", held: str | None = None) -> RedeemCode:
    return RedeemCode(
        campaign_id="c1",
        redemption_id=f"r{n}",
        code="FLASH",
        customer=Customer(contact_id=contact or f"c{n}"),
        cart=Cart(currency="EUR", amount=2000),
        order_ref=f"o{n}",
        reservation_id=held,
    )


def release(n: int, expired: bool = False) -> ReleaseReservation:
    return ReleaseReservation(campaign_id="c1", reservation_id=f"h{n}", expired=expired)


def run(
    commands: list[Command], now: datetime = NOW, **limits: object
) -> tuple[Campaign, list[Event]]:
    define = DefineCampaign(
        campaign_id="c1",
        name="Flash",
        code="FLASH",
        discount=AmountOff(amount_off=500, currency="EUR"),
        limits=Limits.model_validate({"per_contact": None, **limits}),
    )
    state: Campaign | None = None
    log: list[Event] = []
    for command in [define, *commands]:
        for event in decide(state, command, NOW):
            state = evolve(state, event, NOW)
            log.append(event)
    assert state is not None
    return state, log


def refusals(log: list[Event]) -> list[Reason]:
    return [e.reason for e in log if isinstance(e, CommandRejected)]


def test_a_hold_counts_against_the_cap_until_it_is_released() -> None:
    state, log = run([reserve(1), reserve(2), reserve(3), redeem(4)], max_redemptions=2)
    assert refusals(log) == [Reason.EXHAUSTED, Reason.EXHAUSTED]
    assert len(state.holds) == 2 and state.redemptions == 0
    state, log = run([reserve(1), reserve(2), release(1), redeem(4)], max_redemptions=2)
    assert refusals(log) == [] and state.redemptions == 1 and len(state.holds) == 1


def test_holds_count_per_contact_per_code_and_against_the_budget() -> None:
    _, log = run([reserve(1, "ann"), redeem(2, "ann")], per_contact=1)
    assert refusals(log) == [Reason.PER_CONTACT_LIMIT]
    _, log = run([reserve(1), reserve(2), redeem(3)], budget=1000)
    assert refusals(log) == [Reason.BUDGET_EXHAUSTED]


def test_redeeming_a_reservation_checks_nothing_but_its_expiry_and_owner() -> None:
    state, log = run([reserve(1), reserve(2), redeem(9, "c1", held="h1")], max_redemptions=2)
    assert refusals(log) == []  # the cap is reached by the holds themselves: still redeemed
    redeemed = [e for e in log if isinstance(e, CodeRedeemed)]
    assert [(e.reservation_id, e.discount) for e in redeemed] == [("h1", 500)]
    assert state.redemptions == 1 and len(state.holds) == 1 and state.budget_spent == 500
    _, log = run([reserve(1), redeem(9, "eve", held="h1")])
    assert refusals(log) == [Reason.NOT_THIS_RESERVATION]
    _, log = run([redeem(9, held="h1")])
    assert refusals(log) == [Reason.RESERVATION_NOT_FOUND]
    state, _ = run([reserve(1, ttl_s=60)])
    late = decide(state, redeem(9, "c1", held="h1"), NOW + timedelta(seconds=60))
    assert refusals(late) == [Reason.RESERVATION_EXPIRED]


def test_a_timer_releases_a_reservation_when_it_expires_and_only_then() -> None:
    state, log = run([reserve(1, ttl_s=30)])
    [reserved] = [e for e in log if isinstance(e, CodeReserved)]
    assert reserved.expires_at == NOW + timedelta(seconds=30)
    assert decide(state, release(1, expired=True), NOW + timedelta(seconds=29)) == []
    [released] = decide(state, release(1, expired=True), NOW + timedelta(seconds=30))
    state = evolve(state, released, NOW)  # type: ignore[assignment]
    assert len(state.holds) == 0
    assert decide(state, release(1, expired=True), NOW + timedelta(seconds=31)) == []
    assert refusals(decide(state, release(1), NOW)) == [Reason.RESERVATION_NOT_FOUND]


def test_the_campaign_asks_for_one_timer_per_reservation() -> None:
    state, _ = run([reserve(1, ttl_s=10), reserve(2, ttl_s=20), release(1)])
    timers = CampaignAggregate(declare("t.", 3)).timers("c1", state)
    assert [(t.at, t.id) for t in timers] == [(NOW + timedelta(seconds=20), "release:h2")]
    assert timers[0].command == release(2, expired=True)


def test_timers_are_due_in_order_refreshed_and_forgotten() -> None:
    timers = Timers()
    at = NOW + timedelta(seconds=5)
    timers.refresh("a", [Timer(at, "x", "cmd-x"), Timer(at + timedelta(seconds=5), "y", "cmd-y")])
    timers.refresh("b", [Timer(at - timedelta(seconds=1), "z", "cmd-z")])
    assert timers.next_at() == at - timedelta(seconds=1)
    timers.refresh("b", [])  # b's reservation ended: its timer goes
    assert timers.next_at() == at
    assert timers.due(at) == [("a", Timer(at, "x", "cmd-x"))]
    assert timers.due(at) == [] and len(timers) == 1
    timers.refresh("a", [Timer(at + timedelta(seconds=1), "y", "cmd-y")])  # moved earlier
    assert [t.id for _, t in timers.due(at + timedelta(seconds=9))] == ["y"]
    assert timers.next_at() is None
