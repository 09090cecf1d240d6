"""The automations' pure parts: which triggers fire, the send-time verdict, holdout shares
and the lift arithmetic."""

from datetime import UTC, datetime, timedelta

import pytest

from contracts.automations import AutomationDefinition, Limits
from contracts.contacts import ContactEvent
from contracts.money import AmountOff
from services.coupons.automations.automation import Automation, held_out
from services.coupons.automations.lift import Arm, lift, wilson
from services.coupons.automations.triggers import Triggers
from services.coupons.automations.verdict import Cap, Sent, Source, verdict
from services.coupons.contacts.conditions import compile_condition
from services.coupons.contacts.profile import Profile, Trait, evaluation_data
from services.coupons.contacts.reactions import Change
from services.coupons.domain.campaign_state import Campaign

NOW = 1_800_000_000
DAY = 86_400


def automation(trigger: dict[str, object], **extra: object) -> Automation:
    definition = AutomationDefinition.model_validate(
        {"name": "a", "campaign_id": "camp", "trigger": trigger, **extra}
    )
    return Automation.of("auto-1", 3, "active", definition)


def event(i: str, type_: str) -> ContactEvent:
    at = datetime.fromtimestamp(NOW, UTC)
    return ContactEvent(id=i, type=type_, contact_id="ann", occurred_at=at)


def change(profile: Profile | None = None, **parts: object) -> Change:
    defaults: dict[str, object] = {"events": (), "entered": (), "left": (), "cause": "e9"}
    return Change(profile=profile or Profile("ann"), **(defaults | parts))  # type: ignore[arg-type]


def trial_ends(at: int) -> Profile:
    iso = datetime.fromtimestamp(at, UTC).isoformat()
    return Profile("ann", traits={"trial_ends_at": Trait(iso, NOW - 10, "e0")})


def test_an_event_trigger_fires_once_per_event_of_its_type() -> None:
    a = automation({"kind": "event", "event_type": "trial.will_end"})
    found = Triggers.of([a]).fired(
        change(events=[event("e1", "trial.will_end"), event("e2", "page.viewed")]), NOW
    )
    assert [(f.occurrence, f.cause) for f in found] == [("event:e1", "e1")]


def test_segment_triggers_fire_on_entering_or_leaving_their_segment() -> None:
    entering = automation({"kind": "entered_segment", "segment_id": "s1"})
    leaving = automation({"kind": "left_segment", "segment_id": "s1"})
    assert [
        f.occurrence for f in Triggers.of([entering, leaving]).fired(change(entered=("s1",)), NOW)
    ] == ["entered_segment:e9"]
    assert [
        f.occurrence for f in Triggers.of([entering, leaving]).fired(change(left=("s1",)), NOW)
    ] == ["left_segment:e9"]


def test_a_moment_fires_from_its_second_within_the_catch_up_and_says_when_next() -> None:
    a = automation({"kind": "moment", "trait": "trial_ends_at", "offset_s": -3 * DAY})
    moment = NOW + 100
    profile = trial_ends(moment + 3 * DAY)
    assert Triggers.of([a]).fired(change(profile), NOW) == []
    assert Triggers.of([a]).next_moment(profile, NOW) == moment
    assert [f.occurrence for f in Triggers.of([a]).fired(change(profile), moment)] == [
        f"moment:trial_ends_at:{moment}"
    ]
    assert Triggers.of([a]).fired(change(profile), moment + 3601) == []  # past the catch-up window
    assert Triggers.of([a]).next_moment(profile, moment) is None


def test_a_paused_or_out_of_window_automation_fires_nothing() -> None:
    a = automation({"kind": "event", "event_type": "x"}, ends_at="2020-01-01T00:00:00Z")
    assert Triggers.of([a]).fired(change(events=[event("e1", "x")]), NOW) == []
    paused = Automation.of(
        "p", 1, "paused", automation({"kind": "event", "event_type": "x"}).definition
    )
    assert Triggers.of([paused]).fired(change(events=[event("e1", "x")]), NOW) == []


def source(**extra: object) -> Source:
    parts: dict[str, object] = {
        "kind": "automation", "id": "auto-1", "version": 1, "live": True,
        "condition": None, "limits": Limits(), "holdout_percent": 0.0,
    }  # fmt: skip
    return Source(**(parts | extra))  # type: ignore[arg-type]


def campaign(**extra: object) -> Campaign:
    parts: dict[str, object] = {
        "id": "camp", "name": "c", "code": "SHARED",
        "discount": AmountOff(kind="amount", amount_off=500, currency="EUR"),
        "defined_at": datetime.fromtimestamp(NOW - DAY, UTC),
    }  # fmt: skip
    return Campaign(**(parts | extra))  # type: ignore[arg-type]


def judge(
    src: Source | None = None,
    camp: Campaign | None = None,
    sent: Sent | None = None,
    cap: Cap | None = None,
    out: bool = False,
    profile: Profile | None = None,
) -> tuple[str | None, list[str]]:
    found = verdict(
        src or source(),
        camp if camp is not None else campaign(),
        evaluation_data(profile or Profile("ann"), NOW),
        frozenset(),
        sent or Sent(),
        cap or Cap(1, 30 * DAY),
        out,
        datetime.fromtimestamp(NOW, UTC),
    )
    return found.reason, [c.part for c in found.checks]


def test_the_verdict_stops_at_the_first_part_that_says_no() -> None:
    assert judge() == (
        None,
        ["automation", "campaign", "condition", "campaign_rules", "frequency", "holdout", "codes"],
    )
    assert judge(source(live=False))[0] == "automation_inactive"
    assert judge(camp=campaign(status="paused"))[0] == "campaign_not_active"
    condition = compile_condition({">": [{"var": "traits.score"}, 50]})
    assert judge(source(condition=condition))[0] == "condition_false"
    assert judge(out=True)[0] == "held_out"
    assert judge(camp=campaign(code=None))[0] == "no_codes_left"


def test_frequency_caps_per_automation_cooldown_and_per_contact() -> None:
    now = datetime.fromtimestamp(NOW, UTC)
    assert judge(sent=Sent(1, now - timedelta(days=1), 0))[0] == "frequency_capped"
    repeats = source(limits=Limits(per_contact=None, cooldown_s=7 * DAY))
    assert judge(repeats, sent=Sent(1, now - timedelta(days=1), 0), cap=Cap(None, DAY))[0] == (
        "frequency_capped"
    )
    assert judge(repeats, sent=Sent(1, now - timedelta(days=8), 0), cap=Cap(None, DAY))[0] is None
    assert judge(sent=Sent(0, None, 1))[0] == "frequency_capped"  # another source sent one
    assert judge(sent=Sent(0, None, 1), cap=Cap(None, DAY))[0] is None


def test_holdout_is_stable_and_lands_near_its_share() -> None:
    contacts = [f"c{i}" for i in range(100_000)]
    share = sum(held_out("auto-1", c, 10) for c in contacts) / len(contacts)
    assert abs(share - 0.10) < 0.003  # 3 standard deviations of a 10% share over 100,000
    assert [held_out("auto-1", c, 10) for c in contacts[:50]] == [
        held_out("auto-1", c, 10) for c in contacts[:50]
    ]
    assert not any(held_out("auto-1", c, 0) for c in contacts[:1000])
    other = sum(held_out("auto-2", c, 10) and held_out("auto-1", c, 10) for c in contacts)
    assert abs(other / len(contacts) - 0.01) < 0.002  # independent across automations


def test_lift_on_a_hand_built_data_set() -> None:
    # 1,000 treated, 120 converted, 60,000 revenue; 100 control, 8 converted, 4,000 revenue
    found = lift(Arm(1000, 120, 60_000), Arm(100, 8, 4_000), discount_cost=5_000)
    assert found["lift"] == pytest.approx(0.04)
    assert found["incremental_conversions"] == pytest.approx(40.0)
    assert found["incremental_revenue"] == 20_000  # (60 - 40) per contact x 1,000
    assert found["return_on_discount"] == pytest.approx(3.0)  # (20,000 - 5,000) / 5,000
    low, high = found["lift_ci95"]  # type: ignore[misc]
    # Newcombe's interval from Wilson's: 120/1000 in (0.1013, 0.1416), 8/100 in (0.0411, 0.1500)
    assert low == pytest.approx(0.04 - ((0.12 - 0.1013) ** 2 + (0.15 - 0.08) ** 2) ** 0.5, abs=1e-4)
    assert high == pytest.approx(
        0.04 + ((0.1416 - 0.12) ** 2 + (0.08 - 0.0411) ** 2) ** 0.5, abs=1e-4
    )
    assert wilson(8, 100) == pytest.approx((0.0411, 0.1500), abs=1e-3)
    assert lift(Arm(10, 1, 0), Arm(0, 0, 0), 0)["lift"] is None


def test_a_trigger_says_whether_its_condition_held_as_it_fired() -> None:
    a = automation({"kind": "event", "event_type": "x"}, condition={">": [{"var": "traits.s"}, 5]})
    high = Profile("ann", traits={"s": Trait(9, NOW, "e0")})
    assert [
        f.holds for f in Triggers.of([a]).fired(change(high, events=[event("e1", "x")]), NOW)
    ] == [True]
    assert [f.holds for f in Triggers.of([a]).fired(change(events=[event("e1", "x")]), NOW)] == [
        False
    ]
