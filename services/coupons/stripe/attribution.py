"""Which campaign and code of ours a Stripe discount stands for, and which contact paid.

In order: our ids in the promotion code's or coupon's metadata (`growthos_campaign_id`,
`growthos_code`, set by the mirroring job or by hand), then the coupon/promotion code mapping
(`stripe_code_map`), then the promotion code's customer-facing code looked up among ours.
A discount known only by id is looked up among the Discount objects seen whole earlier.
"""

import json
from dataclasses import dataclass
from typing import Any

from projections.db import Connection
from services.coupons.domain.codes import normalise
from services.coupons.stripe.shapes import AppliedDiscount, Payment, applied

CAMPAIGN_KEY = "growthos_campaign_id"
CODE_KEY = "growthos_code"


@dataclass(frozen=True)
class Target:
    campaign_id: str
    code: str


@dataclass(frozen=True)
class Unattributed:
    reason: str
    detail: str


def _obj(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def _ref(value: Any) -> str | None:
    found = value.get("id") if isinstance(value, dict) else value
    return found if isinstance(found, str) else None


def _valid(code: Any) -> str | None:
    if not isinstance(code, str):
        return None
    code = normalise(code)
    return code if 3 <= len(code) <= 64 and code.isalnum() and code.isascii() else None


async def whole(conn: Connection, discount: AppliedDiscount) -> AppliedDiscount:
    """The discount with its object, when only its id came and it was seen before."""
    if discount.discount is not None or not discount.key.startswith("di_"):
        return discount
    seen = await conn.fetchval(
        "SELECT discount FROM stripe_discounts WHERE discount_id = $1", discount.key
    )
    return discount if seen is None else applied(json.loads(seen), discount.key, discount.amount)


async def target_of(conn: Connection, discount: AppliedDiscount) -> Target | Unattributed:
    discount = await whole(conn, discount)
    promotion, coupon = discount.promotion_code, discount.coupon
    if promotion is None and coupon is None:
        return Unattributed("discount_unresolved", f"discount {discount.key} was never seen whole")
    campaign, code = None, None
    for source in (_obj(promotion), _obj(coupon)):
        metadata = (source or {}).get("metadata") or {}
        if campaign is None and metadata.get(CAMPAIGN_KEY):
            campaign, code = str(metadata[CAMPAIGN_KEY]), _valid(metadata.get(CODE_KEY))
    for stripe_id in (_ref(promotion), _ref(coupon)):
        if campaign is None and stripe_id is not None:
            row = await conn.fetchrow(
                "SELECT campaign_id, code FROM stripe_code_map WHERE stripe_id = $1", stripe_id
            )
            if row is not None:
                campaign, code = row["campaign_id"], row["code"]
    customer_code = _valid((_obj(promotion) or {}).get("code"))
    if campaign is None and customer_code is not None:
        campaign = await conn.fetchval(
            "SELECT campaign_id FROM code_claims WHERE code = $1", customer_code
        )
        code = customer_code
    if campaign is None:
        detail = f"promotion code {_ref(promotion)}, coupon {_ref(coupon)}"
        return Unattributed("no_matching_campaign", detail)
    code = code or customer_code or await _shared_code(conn, campaign)
    if code is None:
        return Unattributed("no_matching_code", f"campaign {campaign} has no code to record")
    return Target(campaign, code)


async def _shared_code(conn: Connection, campaign_id: str) -> str | None:
    code: str | None = await conn.fetchval("SELECT code FROM campaigns WHERE id = $1", campaign_id)
    return code


async def contact_of(conn: Connection, payment: Payment) -> str:
    """Our contact id: named in metadata, else the latest contact a code was sent to at this
    email, else one derived from the Stripe customer (or the order, for guests)."""
    if payment.contact_id:
        return str(payment.contact_id)[:128]
    if payment.email:
        found = await conn.fetchval(
            """SELECT contact_id FROM distributions WHERE lower(email) = lower($1)
               ORDER BY distributed_at DESC LIMIT 1""",
            payment.email,
        )
        if found is not None:
            return str(found)
    return f"stripe:{payment.customer or payment.order_ref}"
