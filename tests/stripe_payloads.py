"""Stripe webhook events shaped as Stripe sends them for the pinned API version
(services/coupons/stripe/version.py), and Stripe's signature scheme. Shared by the tests and
the bench. Fields the bridge does not read are kept where Stripe sends them, so a payload
here is what an endpoint receives, not a minimal stand-in."""

import hashlib
import hmac
import json
import time
import uuid
from typing import Any

from services.coupons.stripe.version import STRIPE_API_VERSION

Json = dict[str, Any]


def sid(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def sign(body: bytes, secret: str, at: int | None = None) -> str:
    """The `Stripe-Signature` header: t=<unix time>,v1=HMAC-SHA256(secret, "<t>.<body>")."""
    at = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


def event(kind: str, obj: Json, event_id: str | None = None) -> Json:
    return {
        "id": event_id or sid("evt"),
        "object": "event",
        "api_version": STRIPE_API_VERSION,
        "created": int(time.time()),
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": kind,
    }


def coupon(percent_off: float = 20.0, metadata: Json | None = None) -> Json:
    return {
        "id": sid("cpn")[4:12].upper(),
        "object": "coupon",
        "amount_off": None,
        "created": int(time.time()) - 86400,
        "currency": None,
        "duration": "once",
        "duration_in_months": None,
        "livemode": False,
        "max_redemptions": None,
        "metadata": metadata or {},
        "name": f"{percent_off}% off",
        "percent_off": percent_off,
        "redeem_by": None,
        "times_redeemed": 1,
        "valid": True,
    }


def discount(customer: str, the_coupon: Json, promotion_code: str | None = None) -> Json:
    """A Discount: its coupon whole (under `source` since 2025-09-30), its promotion code an
    id."""
    return {
        "id": sid("di"),
        "object": "discount",
        "checkout_session": None,
        "customer": customer,
        "end": None,
        "invoice": None,
        "invoice_item": None,
        "promotion_code": promotion_code,
        "source": {"type": "coupon", "coupon": the_coupon},
        "start": int(time.time()),
        "subscription": None,
        "subscription_item": None,
    }


def invoice(
    customer: str,
    discounts: list[tuple[str, int]],
    subtotal: int,
    currency: str = "eur",
    email: str | None = "ada@example.com",
    metadata: Json | None = None,
    subscription_metadata: Json | None = None,
) -> Json:
    """A paid subscription invoice; `discounts` are (discount id, amount off) pairs."""
    off = sum(amount for _, amount in discounts)
    now = int(time.time())
    invoice_id = sid("in")
    return {
        "id": invoice_id,
        "object": "invoice",
        "account_country": "DE",
        "account_name": "GrowthOS test",
        "amount_due": subtotal - off,
        "amount_overpaid": 0,
        "amount_paid": subtotal - off,
        "amount_remaining": 0,
        "amount_shipping": 0,
        "attempt_count": 1,
        "attempted": True,
        "auto_advance": False,
        "billing_reason": "subscription_create",
        "collection_method": "charge_automatically",
        "created": now,
        "currency": currency,
        "customer": customer,
        "customer_email": email,
        "customer_name": "Ada Lovelace",
        "discounts": [discount_id for discount_id, _ in discounts],
        "lines": {
            "object": "list",
            "data": [
                {
                    "id": sid("il"),
                    "object": "line_item",
                    "amount": subtotal,
                    "currency": currency,
                    "discount_amounts": [
                        {"amount": amount, "discount": discount_id}
                        for discount_id, amount in discounts
                    ],
                    "discounts": [discount_id for discount_id, _ in discounts],
                    "invoice": invoice_id,
                    "quantity": 1,
                }
            ],
            "has_more": False,
            "total_count": 1,
            "url": f"/v1/invoices/{invoice_id}/lines",
        },
        "livemode": False,
        "metadata": metadata or {},
        "number": f"TEST-{now % 100000:05d}",
        "parent": {
            "quote_details": None,
            "subscription_details": {
                "metadata": subscription_metadata or {},
                "subscription": sid("sub"),
            },
            "type": "subscription_details",
        },
        "period_end": now,
        "period_start": now,
        "status": "paid",
        "status_transitions": {"finalized_at": now, "paid_at": now, "voided_at": None},
        "subtotal": subtotal,
        "subtotal_excluding_tax": subtotal,
        "total": subtotal - off,
        "total_discount_amounts": [
            {"amount": amount, "discount": discount_id} for discount_id, amount in discounts
        ],
        "total_excluding_tax": subtotal - off,
        "total_taxes": [],
    }


def invoice_payment(
    invoice_id: str, amount: int, payment_intent: str, currency: str = "eur"
) -> Json:
    return {
        "id": sid("inpay"),
        "object": "invoice_payment",
        "amount_paid": amount,
        "amount_requested": amount,
        "created": int(time.time()),
        "currency": currency,
        "invoice": invoice_id,
        "is_default": True,
        "livemode": False,
        "payment": {"type": "payment_intent", "payment_intent": payment_intent},
        "status": "paid",
        "status_transitions": {"canceled_at": None, "paid_at": int(time.time())},
    }


def charge(
    payment_intent: str, amount: int, refunded: int, currency: str = "eur", charge_id: str = ""
) -> Json:
    """A charge after refunds: in API 2025-03-31 it no longer names its invoice."""
    return {
        "id": charge_id or sid("ch"),
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": refunded,
        "balance_transaction": sid("txn"),
        "captured": True,
        "created": int(time.time()),
        "currency": currency,
        "customer": None,
        "livemode": False,
        "metadata": {},
        "paid": True,
        "payment_intent": payment_intent,
        "refunded": refunded == amount,
        "status": "succeeded",
    }


def credit_note(invoice_id: str, amount: int, refunded: int = 0, currency: str = "eur") -> Json:
    """A credit note: `refunded` of `amount` went back to the card, the rest to the balance."""
    return {
        "id": sid("cn"),
        "object": "credit_note",
        "amount": amount,
        "created": int(time.time()),
        "credit_amount": amount - refunded,
        "currency": currency,
        "customer": sid("cus"),
        "invoice": invoice_id,
        "livemode": False,
        "memo": None,
        "metadata": {},
        "out_of_band_amount": None,
        "reason": "order_change",
        "refunds": [{"amount_refunded": refunded, "refund": sid("re")}] if refunded else [],
        "status": "issued",
        "total": amount,
        "type": "post_payment",
    }


def checkout_session(
    promotion_code: str, coupon_id: str, subtotal: int, off: int, currency: str = "eur"
) -> Json:
    """A paid one-off Checkout Session (payment mode, no invoice)."""
    return {
        "id": sid("cs_test"),
        "object": "checkout.session",
        "amount_subtotal": subtotal,
        "amount_total": subtotal - off,
        "client_reference_id": None,
        "currency": currency,
        "customer": sid("cus"),
        "customer_details": {"email": "grace@example.com", "name": "Grace Hopper"},
        "customer_email": None,
        "discounts": [{"coupon": coupon_id, "promotion_code": promotion_code}],
        "invoice": None,
        "livemode": False,
        "metadata": {},
        "mode": "payment",
        "payment_intent": sid("pi"),
        "payment_status": "paid",
        "status": "complete",
        "total_details": {"amount_discount": off, "amount_shipping": 0, "amount_tax": 0},
    }


def body_of(document: Json) -> bytes:
    return json.dumps(document, indent=2).encode()
