"""Lift: did the coupon make people convert who would not have anyway? Pure arithmetic over
the treated group (sent a coupon) and the control group (held out), documented in
docs/analytics.md ("Automation lift")."""

import math
from dataclasses import dataclass
from statistics import NormalDist

Z95 = NormalDist().inv_cdf(0.975)


@dataclass(frozen=True)
class Arm:
    contacts: int
    conversions: int
    revenue: int

    @property
    def rate(self) -> float | None:
        return self.conversions / self.contacts if self.contacts else None


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (sound at small n and rates near 0 or 1)."""
    if n == 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def lift(treated: Arm, control: Arm, discount_cost: int) -> dict[str, object]:
    """Conversion rates with 95% intervals; their difference with Newcombe's interval (from
    the two Wilson intervals); incremental conversions and revenue over the treated group;
    return on the discount: (incremental revenue - discount cost) / discount cost."""
    out: dict[str, object] = {
        "treated": _arm(treated),
        "control": _arm(control),
        "lift": None,
        "lift_ci95": None,
        "incremental_conversions": None,
        "incremental_revenue": None,
        "discount_cost": discount_cost,
        "return_on_discount": None,
    }
    p_t, p_c = treated.rate, control.rate
    if p_t is None or p_c is None:
        return out
    low_t, high_t = wilson(treated.conversions, treated.contacts) or (0.0, 0.0)
    low_c, high_c = wilson(control.conversions, control.contacts) or (0.0, 0.0)
    diff = p_t - p_c
    below = math.sqrt((p_t - low_t) ** 2 + (high_c - p_c) ** 2)
    above = math.sqrt((high_t - p_t) ** 2 + (p_c - low_c) ** 2)
    incremental_revenue = round(
        (treated.revenue / treated.contacts - control.revenue / control.contacts) * treated.contacts
    )
    out |= {
        "lift": round(diff, 6),
        "lift_ci95": [round(diff - below, 6), round(diff + above, 6)],
        "incremental_conversions": round(diff * treated.contacts, 2),
        "incremental_revenue": incremental_revenue,
        "return_on_discount": round((incremental_revenue - discount_cost) / discount_cost, 4)
        if discount_cost
        else None,
    }
    return out


def _arm(arm: Arm) -> dict[str, object]:
    interval = wilson(arm.conversions, arm.contacts)
    return {
        "contacts": arm.contacts,
        "conversions": arm.conversions,
        "conversion_rate": None if arm.rate is None else round(arm.rate, 6),
        "conversion_rate_ci95": None if interval is None else [round(v, 6) for v in interval],
        "revenue": arm.revenue,
    }
