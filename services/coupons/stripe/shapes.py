"""Stripe events -> the facts the bridge acts on. Pure: no I/O.

Reads the pinned API version's shapes (2025-09-30.clover) and the older ones that differ
(docs/stripe.md):
- an invoice's `discounts` are ids unless expanded; versions before 2025-03-31 also carry
  the first one whole as `discount`, and the invoice's `charge` and `payment_intent`;
- from 2025-03-31 a payment is linked to its invoice by `invoice_payment.paid`, and a charge
  no longer names its invoice;
- a discount names its coupon as `source.coupon`; before 2025-09-30 as `coupon`.
"""

from dataclasses import dataclass
from typing import Any

Json = dict[str, Any]
CONTACT_KEY = "growthos_contact_id"
"""Metadata key (invoice, subscription, checkout session, customer) naming our contact."""


class MalformedStripeEvent(ValueError):
    """The event lacks a field the bridge needs; `field` names it."""

    def __init__(self, field: str) -> None:
        super().__init__(f"missing or invalid {field}")
        self.field = field


@dataclass(frozen=True)
class AppliedDiscount:
    """One discount on a payment: `key` identifies it within the order (a discount id, or
    the promotion code or coupon id on a checkout session); `amount` it took off."""

    key: str
    amount: int
    discount: Json | None = None
    """The whole Discount object, when the payload has it."""
    coupon: str | Json | None = None
    promotion_code: str | Json | None = None


@dataclass(frozen=True)
class Payment:
    """A paid invoice or checkout session."""

    order_ref: str
    currency: str
    amount_paid: int
    discounts: tuple[AppliedDiscount, ...]
    customer: str | None
    email: str | None
    contact_id: str | None
    """Our contact, when the payload names it (metadata or `client_reference_id`)."""
    charge: str | None = None
    payment_intent: str | None = None
    paid_at: int | None = None
    """Unix time Stripe says it was paid."""


@dataclass(frozen=True)
class Refund:
    """Money given back. `cumulative`: `amount` is everything refunded on `charge` so far
    (charge.refunded), not this refund alone (credit notes)."""

    refund_id: str
    amount: int
    currency: str
    cumulative: bool
    invoice: str | None = None
    charge: str | None = None
    payment_intent: str | None = None


@dataclass(frozen=True)
class PaymentLink:
    """A charge or payment intent paid this invoice (invoice_payment.paid, from 2025-03-31)."""

    invoice: str
    charge: str | None
    payment_intent: str | None


@dataclass(frozen=True)
class DiscountSeen:
    """A Discount object in full (customer.discount.*), remembered to resolve its id later."""

    discount: Json


Fact = Payment | Refund | PaymentLink | DiscountSeen


def _id(value: Any) -> str | None:
    """An expandable field: an id, or the expanded object with its id."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _need(obj: Json, field: str, kind: type) -> Any:
    value = obj.get(field)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise MalformedStripeEvent(f"data.object.{field}")
    return value


def _metadata(obj: Any) -> Json:
    metadata = obj.get("metadata") if isinstance(obj, dict) else None
    return metadata if isinstance(metadata, dict) else {}


def coupon_of(discount: Json) -> str | Json | None:
    coupon = discount.get("coupon")
    if coupon is None and isinstance(discount.get("source"), dict):
        coupon = discount["source"].get("coupon")
    return coupon


def applied(discount: Json, key: str, amount: int) -> AppliedDiscount:
    return AppliedDiscount(
        key=key,
        amount=amount,
        discount=discount,
        coupon=coupon_of(discount),
        promotion_code=discount.get("promotion_code"),
    )


def _invoice_paid(invoice: Json) -> Payment:
    legacy = invoice.get("discount") if isinstance(invoice.get("discount"), dict) else None
    whole = {d["id"]: d for d in invoice.get("discounts") or [] if isinstance(d, dict)}
    if legacy is not None and isinstance(legacy.get("id"), str):
        whole.setdefault(legacy["id"], legacy)
    discounts = []
    for entry in invoice.get("total_discount_amounts") or []:
        key, amount = _id(entry.get("discount")), entry.get("amount")
        if key is None or not isinstance(amount, int):
            raise MalformedStripeEvent("data.object.total_discount_amounts")
        if amount > 0:
            found = whole.get(key)
            discounts.append(
                applied(found, key, amount) if found else AppliedDiscount(key=key, amount=amount)
            )
    parent = invoice.get("parent") or {}
    subscription = parent.get("subscription_details") or invoice.get("subscription_details")
    contact = _metadata(invoice).get(CONTACT_KEY) or _metadata(subscription).get(CONTACT_KEY)
    return Payment(
        order_ref=_need(invoice, "id", str),
        currency=_need(invoice, "currency", str).upper(),
        amount_paid=_need(invoice, "amount_paid", int),
        discounts=tuple(discounts),
        customer=_id(invoice.get("customer")),
        email=invoice.get("customer_email"),
        contact_id=contact,
        charge=_id(invoice.get("charge")),
        payment_intent=_id(invoice.get("payment_intent")),
        paid_at=(invoice.get("status_transitions") or {}).get("paid_at"),
    )


def _session_paid(session: Json) -> Payment | None:
    """A session that made an invoice is counted by that invoice's `invoice.paid`; one not
    yet paid (delayed methods) by `checkout.session.async_payment_succeeded`."""
    if session.get("invoice") or session.get("payment_status") != "paid":
        return None
    details = session.get("total_details") or {}
    breakdown = (details.get("breakdown") or {}).get("discounts")
    discounts: list[AppliedDiscount] = []
    if breakdown:
        for entry in breakdown:
            whole = entry.get("discount") or {}
            key = _id(whole.get("promotion_code")) or _id(coupon_of(whole)) or _id(whole)
            if key is None or not isinstance(entry.get("amount"), int):
                raise MalformedStripeEvent("data.object.total_details.breakdown.discounts")
            if entry["amount"] > 0:
                discounts.append(applied(whole, key, entry["amount"]))
    else:
        listed = [d for d in session.get("discounts") or [] if isinstance(d, dict)]
        total = details.get("amount_discount") or 0
        for entry, amount in zip(listed, split(total, [1] * len(listed)), strict=True):
            key = _id(entry.get("promotion_code")) or _id(entry.get("coupon"))
            if key is None:
                raise MalformedStripeEvent("data.object.discounts")
            if amount > 0:
                discounts.append(applied(entry, key, amount))
    customer_details = session.get("customer_details") or {}
    contact = _metadata(session).get(CONTACT_KEY) or session.get("client_reference_id")
    return Payment(
        order_ref=_need(session, "id", str),
        currency=_need(session, "currency", str).upper(),
        amount_paid=_need(session, "amount_total", int),
        discounts=tuple(discounts),
        customer=_id(session.get("customer")),
        email=customer_details.get("email") or session.get("customer_email"),
        contact_id=contact,
        payment_intent=_id(session.get("payment_intent")),
        paid_at=session.get("created"),
    )


def _charge_refunded(charge: Json) -> Refund:
    charge_id = _need(charge, "id", str)
    refunded = _need(charge, "amount_refunded", int)
    return Refund(
        refund_id=f"{charge_id}:{refunded}",
        amount=refunded,
        currency=_need(charge, "currency", str).upper(),
        cumulative=True,
        invoice=_id(charge.get("invoice")),
        charge=charge_id,
        payment_intent=_id(charge.get("payment_intent")),
    )


def _credit_note(note: Json) -> Refund | None:
    """Only the part not refunded to the card: that part comes as charge.refunded too."""
    amount = _need(note, "amount", int)
    if note.get("refunds"):
        amount -= sum(r.get("amount_refunded", 0) for r in note["refunds"])
    elif note.get("refund"):
        amount = 0  # older versions name one refund without its amount: all of it refunded
    if amount <= 0:
        return None
    return Refund(
        refund_id=_need(note, "id", str),
        amount=amount,
        currency=_need(note, "currency", str).upper(),
        cumulative=False,
        invoice=_id(note.get("invoice")),
    )


def _invoice_payment(payment: Json) -> PaymentLink:
    paid_by = payment.get("payment") or {}
    invoice = _id(payment.get("invoice"))
    if invoice is None:
        raise MalformedStripeEvent("data.object.invoice")
    return PaymentLink(invoice, _id(paid_by.get("charge")), _id(paid_by.get("payment_intent")))


def _discount(discount: Json) -> DiscountSeen:
    _need(discount, "id", str)
    return DiscountSeen(discount)


PARSERS = {
    "invoice.paid": _invoice_paid,
    "checkout.session.completed": _session_paid,
    "checkout.session.async_payment_succeeded": _session_paid,
    "charge.refunded": _charge_refunded,
    "credit_note.created": _credit_note,
    "invoice_payment.paid": _invoice_payment,
    "customer.discount.created": _discount,
    "customer.discount.updated": _discount,
}
"""The event types the bridge acts on; every other verified event is kept, unused."""


def fact_of(event: Json) -> Fact | None:
    """The fact an event states, or None when the bridge has nothing to do with it."""
    parse = PARSERS.get(event.get("type", ""))
    if parse is None:
        return None
    obj = (event.get("data") or {}).get("object")
    if not isinstance(obj, dict):
        raise MalformedStripeEvent("data.object")
    return parse(obj)


def split(total: int, weights: list[int]) -> list[int]:
    """`total` shared in proportion to `weights`, in whole minor units that add up exactly
    (largest remainder; ties to the earlier share)."""
    if not weights:
        return []
    weight = sum(weights)
    if weight == 0:
        weights, weight = [1] * len(weights), len(weights)
    shares = [total * w // weight for w in weights]
    rests = sorted(range(len(weights)), key=lambda i: -(total * weights[i] % weight))
    for i in rests[: total - sum(shares)]:
        shares[i] += 1
    return shares
