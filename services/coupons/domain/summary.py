"""A discount in words, for the messages that carry a code, and the public `CouponIssued`.

Amounts use the currency's minor-unit exponent (ISO 4217): EUR 12.50, JPY 1250, KWD 1.250."""

from decimal import Decimal

from contracts.events import CodeDistributed
from contracts.money import AmountOff, Discount, PercentOff
from contracts.public import CouponIssued
from contracts.rules import Duration
from services.coupons.domain.campaign import Campaign

ZERO_DECIMAL = frozenset(
    [
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "ISK",
        "JPY",
        "KMF",
        "KRW",
        "MGA",
        "PYG",
        "RWF",
        "UGX",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    ]
)
THREE_DECIMAL = frozenset(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"])


def money(minor: int, currency: str) -> str:
    exponent = 0 if currency in ZERO_DECIMAL else 3 if currency in THREE_DECIMAL else 2
    amount = Decimal(minor).scaleb(-exponent)
    return f"{currency} {amount:.{exponent}f}"


def describe(discount: Discount, duration: Duration) -> str:
    match discount:
        case PercentOff(max_amount_off=cap, currency=currency):
            words = f"{discount.percent_off.normalize():f}% off"
            if cap is not None and currency is not None:
                words += f" (up to {money(cap, currency)})"
        case AmountOff():
            words = f"{money(discount.amount_off, discount.currency)} off"
    match duration.kind:
        case "once":
            return f"{words}, on one invoice"
        case "repeating":
            return f"{words}, for {duration.months} month{'s' if duration.months != 1 else ''}"
        case "forever":
            return f"{words}, on every invoice"


def issued(campaign: Campaign, event: CodeDistributed) -> CouponIssued:
    return CouponIssued(
        code=event.code,
        contact_id=event.contact_id,
        email=event.email,
        campaign_id=event.campaign_id,
        campaign_name=campaign.name,
        expires_at=event.expires_at,
        summary=describe(campaign.discount, campaign.duration),
        channel=event.channel,
        source_ref=event.source_ref,
        distribution_id=event.distribution_id,
    )
