"""Whether a due run sends its coupon now, and if not, which part says no. Pure.

The same checks serve the sender (one verdict per due run) and the dry run (every check,
in order, with what each found). Order: the automation is live, the campaign can give a
code, the condition holds, the campaign's own rules admit the contact, the frequency caps
allow one more, the contact is not in the control group, a code is left."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from contracts.automations import Limits
from contracts.checkout import Customer
from contracts.reasons import Reason as CampaignReason
from services.coupons.contacts.conditions import Condition
from services.coupons.domain import eligibility as checks
from services.coupons.domain.campaign_state import Campaign

Reason = Literal[
    "automation_inactive",
    "campaign_not_active",
    "condition_false",
    "not_eligible",
    "frequency_capped",
    "held_out",
    "no_codes_left",
]


@dataclass(frozen=True)
class Source:
    """What sends: an automation, or a broadcast."""

    kind: Literal["automation", "broadcast"]
    id: str
    version: int
    live: bool
    condition: Condition | None
    limits: Limits
    holdout_percent: float


@dataclass(frozen=True)
class Sent:
    """The contact's coupons sent so far: by this source (count, last), and by every source
    within the global cap's window."""

    by_source: int = 0
    last_by_source: datetime | None = None
    in_window: int = 0


@dataclass(frozen=True)
class Cap:
    """The global frequency cap: at most `count` coupons per contact in `window_s`."""

    count: int | None
    window_s: int


@dataclass(frozen=True)
class Check:
    part: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Verdict:
    checks: tuple[Check, ...]
    reason: Reason | None
    """None: send."""

    @property
    def detail(self) -> str:
        return self.checks[-1].detail if self.checks else ""


def verdict(
    source: Source,
    campaign: Campaign | None,
    contact: Mapping[str, Any],
    member_of: frozenset[str],
    sent: Sent,
    cap: Cap,
    held_out: bool,
    now: datetime,
) -> Verdict:
    """Run the checks in order, stopping at the first that fails; `contact` is the
    condition's evaluation data (`evaluation_data(profile, now)`)."""
    done: list[Check] = []
    steps: tuple[tuple[str, Reason, Callable[[], str | None]], ...] = (
        ("automation", "automation_inactive", lambda: _live(source)),
        ("campaign", "campaign_not_active", lambda: _campaign_active(campaign, now)),
        ("condition", "condition_false", lambda: _condition(source.condition, contact)),
        ("campaign_rules", "not_eligible", lambda: _admitted(campaign, contact, member_of)),
        ("frequency", "frequency_capped", lambda: _frequency(source.limits, sent, cap, now)),
        ("holdout", "held_out", lambda: "in the control group" if held_out else None),
        ("codes", "no_codes_left", lambda: _code_left(campaign, str(contact["contact_id"]))),
    )
    for part, reason, step in steps:
        failure = step()
        done.append(Check(part, failure is None, failure or "ok"))
        if failure is not None:
            return Verdict(tuple(done), reason)
    return Verdict(tuple(done), None)


def _live(source: Source) -> str | None:
    return None if source.live else f"the {source.kind} is not active now"


def _campaign_active(campaign: Campaign | None, now: datetime) -> str | None:
    if campaign is None:
        return "no such campaign"
    refusal = checks.check_status(campaign.status)
    if refusal is None and campaign.validity.expires_at and now >= campaign.validity.expires_at:
        refusal = checks.Refusal(CampaignReason.EXPIRED, "the campaign has expired")
    return None if refusal is None else f"{refusal.reason.value}: {refusal.detail}"


def _condition(condition: Condition | None, contact: Mapping[str, Any]) -> str | None:
    if condition is None or condition.matches(contact):
        return None
    return "the condition does not hold for this contact now"


def _admitted(
    campaign: Campaign | None, contact: Mapping[str, Any], member_of: frozenset[str]
) -> str | None:
    assert campaign is not None  # checked before
    contact_id = str(contact["contact_id"])
    rules = campaign.eligibility
    used = campaign.per_contact.get(contact_id, 0)
    per_contact = campaign.limits.per_contact
    email = contact.get("email")
    refusal = checks.first_refusal(
        [
            checks.check_segments(rules, member_of),
            checks.check_email_domain(rules, _customer(contact_id, email)),
            None
            if per_contact is None or used < per_contact
            else checks.Refusal(CampaignReason.PER_CONTACT_LIMIT, f"already used {used} times"),
        ]
    )
    return None if refusal is None else f"{refusal.reason.value}: {refusal.detail}"


def _customer(contact_id: str, email: object) -> Customer:
    try:
        return Customer(contact_id=contact_id, email=email if isinstance(email, str) else None)
    except ValueError:
        return Customer(contact_id=contact_id)


def _frequency(limits: Limits, sent: Sent, cap: Cap, now: datetime) -> str | None:
    if limits.per_contact is not None and sent.by_source >= limits.per_contact:
        return f"already sent {sent.by_source} time(s) by this automation"
    if limits.cooldown_s is not None and sent.last_by_source is not None:
        wait = limits.cooldown_s - (now - sent.last_by_source).total_seconds()
        if wait > 0:
            return f"cooling down for {int(wait)} more seconds"
    if cap.count is not None and sent.in_window >= cap.count:
        return f"{sent.in_window} coupon(s) sent to this contact in {cap.window_s} s"
    return None


def _code_left(campaign: Campaign | None, contact_id: str) -> str | None:
    assert campaign is not None
    if contact_id in campaign.holders or campaign.next_unique() or campaign.code:
        return None
    return "every unique code is given out"
