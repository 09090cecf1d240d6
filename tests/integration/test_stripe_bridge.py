"""The Stripe bridge end to end, on the real service, Kafka and PostgreSQL: signed webhooks in,
redemptions, refunds and reversals in the event log, whatever the duplicates and the order."""

import asyncio
import random
import time

import asyncpg
import httpx
import pytest

from contracts.events import CodeRedeemed, RedemptionRefunded, RedemptionReversed
from services.coupons.settings import Settings
from services.coupons.stripe.translate import redemption_id
from tests import stripe_payloads as sp
from tests.integration.helpers import SECRET, define, deliver, eventually, handled, logged, read

pytestmark = pytest.mark.integration


async def test_forged_stale_and_malformed_deliveries_are_refused_and_not_recorded(
    bridge: httpx.Client, settings: Settings
) -> None:
    real = sp.event("invoice.paid", sp.invoice(sp.sid("cus"), [], 1000))
    body = sp.body_of(real)
    post = bridge.post
    refused = {
        "signature_missing": post("/v1/webhooks/stripe", content=body),
        "signature_invalid": post(
            "/v1/webhooks/stripe",
            content=body,
            headers={"Stripe-Signature": sp.sign(body, "whsec_someone_else")},
        ),
        "signature_expired": post(
            "/v1/webhooks/stripe",
            content=body,
            headers={"Stripe-Signature": sp.sign(body, SECRET, int(time.time()) - 301)},
        ),
        "invalid_payload": post(
            "/v1/webhooks/stripe",
            content=b"{not json",
            headers={"Stripe-Signature": sp.sign(b"{not json", SECRET)},
        ),
    }
    for code, reply in refused.items():
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"]["code"] == code
    tampered = body.replace(b'"amount_paid": 1000', b'"amount_paid": 1')
    reply = post(
        "/v1/webhooks/stripe", content=tampered, headers={"Stripe-Signature": sp.sign(body, SECRET)}
    )
    assert reply.json()["error"]["code"] == "signature_invalid"
    unhandled = sp.event("customer.created", {"id": sp.sid("cus"), "object": "customer"})
    assert deliver(bridge, unhandled).status_code == 200
    assert deliver(bridge, real).status_code == 200
    rows = await handled(settings, 2)
    assert sorted((r["type"], r["outcome"]) for r in rows) == [
        ("customer.created", "kept"),
        ("invoice.paid", "no_discount"),
    ]


async def test_five_deliveries_in_any_order_make_one_redemption_refunds_and_one_reversal(
    bridge: httpx.Client, settings: Settings
) -> None:
    campaign = define(bridge, "STRIPE20")
    customer = sp.sid("cus")
    ours = sp.coupon(metadata={"growthos_campaign_id": campaign, "growthos_code": "STRIPE20"})
    found = sp.discount(customer, ours, promotion_code=sp.sid("promo"))
    paid = sp.invoice(
        customer, [(found["id"], 1000)], 5000, subscription_metadata={"growthos_contact_id": "c_7"}
    )
    intent = sp.sid("pi")
    charge_id = sp.sid("ch")
    deliveries = [
        sp.event("customer.discount.created", found),
        sp.event("invoice_payment.paid", sp.invoice_payment(paid["id"], 4000, intent)),
        sp.event("invoice.paid", paid),
        sp.event("charge.refunded", sp.charge(intent, 4000, 1000, charge_id=charge_id)),
        sp.event("credit_note.created", sp.credit_note(paid["id"], 500)),
    ]
    # the refund first (held until its payment is known), then everything five times, shuffled
    assert deliver(bridge, deliveries[3]).status_code == 200
    shuffled = deliveries * 5
    random.Random(7).shuffle(shuffled)
    for document in shuffled:
        assert deliver(bridge, document).status_code == 200
    rows = await handled(settings, len(deliveries))
    assert len(rows) == len(deliveries)
    rid = redemption_id(paid["id"], found["id"])
    mine = [e for e in await logged(settings) if getattr(e, "redemption_id", None) == rid]
    redeemed = [e for e in mine if isinstance(e, CodeRedeemed)]
    assert [(e.amount, e.discount, e.total, e.source) for e in redeemed] == [
        (5000, 1000, 4000, "stripe")
    ]
    assert redeemed[0].contact_id == "c_7" and redeemed[0].order_ref == paid["id"]
    assert redeemed[0].code == "STRIPE20" and redeemed[0].currency == "EUR"
    refunds = sorted(e.refunded for e in mine if isinstance(e, RedemptionRefunded))
    assert refunds == [500, 1000]
    assert not [e for e in mine if isinstance(e, RedemptionReversed)]

    # the rest of the charge refunded (a later running total): the redemption is reversed,
    # and an earlier running total arriving late changes nothing
    full = sp.event("charge.refunded", sp.charge(intent, 4000, 4000, charge_id=charge_id))
    late = sp.event("charge.refunded", sp.charge(intent, 4000, 2500, charge_id=charge_id))
    for document in (full, full, late, full):
        assert deliver(bridge, document).status_code == 200
    await handled(settings, len(deliveries) + 2)
    mine = [e for e in await logged(settings) if getattr(e, "redemption_id", None) == rid]
    assert len([e for e in mine if isinstance(e, RedemptionReversed)]) == 1
    assert len([e for e in mine if isinstance(e, RedemptionRefunded)]) == 2
    # the webhook's effects reach the read models asynchronously (docs/analytics.md: freshness)
    reply = eventually(
        lambda: read(bridge, f"/v1/redemptions/{rid}"),
        lambda r: r.status_code == 200 and r.json()["reversed_at"] is not None,
    )
    assert reply.status_code == 200 and reply.json()["reversed_at"] is not None
    usage = read(bridge, f"/v1/campaigns/{campaign}").json()["usage"]
    assert usage["redemptions"] == 0


async def test_unknown_discounts_are_kept_unattributed_and_mapped_sessions_recorded(
    bridge: httpx.Client, settings: Settings
) -> None:
    campaign = define(bridge, "SESSION15")
    promotion, coupon_id = sp.sid("promo"), "SPRING15"
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(
            "INSERT INTO stripe_code_map (stripe_id, campaign_id, code) VALUES ($1, $2, $3)",
            promotion,
            campaign,
            "SESSION15",
        )
    finally:
        await conn.close()
    session = sp.checkout_session(promotion, coupon_id, 3000, 450)
    customer = sp.sid("cus")
    stranger = sp.discount(customer, sp.coupon(), promotion_code=sp.sid("promo"))
    unseen = sp.sid("di")
    paid = sp.invoice(customer, [(stranger["id"], 300), (unseen, 100)], 2000)
    for document in (
        sp.event("checkout.session.completed", session),
        sp.event("customer.discount.created", stranger),
        sp.event("invoice.paid", paid),
    ):
        assert deliver(bridge, document).status_code == 200
    await handled(settings, 3)
    conn = await asyncpg.connect(settings.database_url)
    try:
        rows = await conn.fetch(
            """SELECT order_ref, campaign_id, code, amount, discount, total, unattributed
               FROM stripe_redemptions ORDER BY order_ref, discount"""
        )
    finally:
        await conn.close()
    by_order = {(r["order_ref"], r["discount"]): dict(r) for r in rows}
    assert by_order[(session["id"], 450)] | {"order_ref": None} == {
        "order_ref": None,
        "campaign_id": campaign,
        "code": "SESSION15",
        "amount": 3000,
        "discount": 450,
        "total": 2550,
        "unattributed": None,
    }
    # one invoice, two discounts it paid 1600 with: revenue is shared, never counted twice
    assert by_order[(paid["id"], 300)]["unattributed"] == "no_matching_campaign"
    assert by_order[(paid["id"], 100)]["unattributed"] == "discount_unresolved"
    assert by_order[(paid["id"], 300)]["total"] + by_order[(paid["id"], 100)]["total"] == 1600
    redeemed = [e for e in await logged(settings) if isinstance(e, CodeRedeemed)]
    assert [(e.order_ref, e.contact_id) for e in redeemed] == [
        (session["id"], f"stripe:{session['customer']}")
    ]


async def test_a_refund_held_while_its_payment_committed_elsewhere_is_applied_by_the_sweep(
    bridge: httpx.Client, settings: Settings
) -> None:
    intent = sp.sid("pi")
    refund = sp.event("charge.refunded", sp.charge(intent, 3000, 3000))
    assert deliver(bridge, refund).status_code == 200
    [row] = await handled(settings, 1)
    assert row["outcome"] == "held"
    conn = await asyncpg.connect(settings.database_url)
    try:  # the payment, committed by another partition after the refund looked for it
        await conn.execute(
            """INSERT INTO stripe_orders (order_ref, currency, amount_paid, contact_id,
                   payment_intent) VALUES ('in_raced', 'EUR', 3000, 'c_1', $1)""",
            intent,
        )
        deadline = time.monotonic() + 10
        while await conn.fetchval("SELECT count(*) FROM stripe_held_refunds"):
            assert time.monotonic() < deadline, "the held refund was never applied"
            await asyncio.sleep(0.2)
        order = await conn.fetchrow("SELECT * FROM stripe_orders WHERE order_ref = 'in_raced'")
        assert (order["refunded"], order["reversed"]) == (3000, True)
    finally:
        await conn.close()
