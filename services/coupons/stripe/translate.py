"""What each Stripe fact does to our ledger: paid orders become redemptions, refunds and credit
notes reduce their revenue or reverse them.

Every command has a deterministic redemption id and idempotency key, derived from Stripe's
ids, so sending it again (a redelivered event, a crash before the offset was stored) is
answered with the first outcome and changes nothing. The bridge's own rows are written on
the caller's connection, inside the transaction that also stores the consumed offset.
"""

import dataclasses
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from contracts.base import Frozen
from contracts.commands import RecordRedemption, RefundRedemption, ReverseRedemption
from contracts.envelope import Envelope
from contracts.reasons import Reason
from contracts.replies import Reply
from projections.db import Connection
from services.coupons.stripe import attribution
from services.coupons.stripe.shapes import (
    DiscountSeen,
    Fact,
    Payment,
    PaymentLink,
    Refund,
    split,
)

Decide = Callable[[Envelope[Any]], Awaitable[Reply]]
REDEMPTIONS = uuid.UUID("6f1b7c4e-3d0a-5b8e-9c2f-5472697065ab")
ACTOR = "stripe"


class CommandFailed(RuntimeError):
    """The decider refused a command the bridge cannot settle by itself; retried later."""


def redemption_id(order_ref: str, discount_key: str) -> str:
    return str(uuid.uuid5(REDEMPTIONS, f"{order_ref}/{discount_key}"))


class Translator:
    def __init__(self, decide: Decide) -> None:
        self._decide = decide

    async def handle(self, conn: Connection, fact: Fact, event_id: str) -> str:
        """Act on one fact; the outcome, in a word, for the record of handled events."""
        match fact:
            case Payment():
                return await self._paid(conn, fact, event_id)
            case Refund():
                return await self._refund(conn, fact, event_id)
            case PaymentLink():
                return await self._link(conn, fact, event_id)
            case DiscountSeen():
                await conn.execute(
                    """INSERT INTO stripe_discounts (discount_id, discount) VALUES ($1, $2)
                       ON CONFLICT (discount_id) DO UPDATE SET discount = EXCLUDED.discount""",
                    fact.discount["id"],
                    json.dumps(fact.discount),
                )
                return "discount_seen"

    async def _send(self, campaign_id: str, command: Frozen, key: str, event_id: str) -> Reply:
        envelope: Envelope[Any] = Envelope(
            key=campaign_id,
            correlation_id=f"stripe-{event_id}",
            idempotency_key=key,
            actor=ACTOR,
            data=command,
        )
        return await self._decide(envelope)

    async def _paid(self, conn: Connection, payment: Payment, event_id: str) -> str:
        if await conn.fetchval(
            "SELECT 1 FROM stripe_orders WHERE order_ref = $1", payment.order_ref
        ):
            return "order_known"
        contact = await attribution.contact_of(conn, payment)
        await conn.execute(
            """INSERT INTO stripe_orders (order_ref, currency, amount_paid, customer_id,
                   contact_id, charge_id, payment_intent, paid_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, coalesce(to_timestamp($8), now()))""",
            payment.order_ref,
            payment.currency,
            payment.amount_paid,
            payment.customer,
            contact,
            payment.charge,
            payment.payment_intent,
            payment.paid_at,
        )
        totals = split(payment.amount_paid, [d.amount for d in payment.discounts])
        for discount, total in zip(payment.discounts, totals, strict=True):
            rid = redemption_id(payment.order_ref, discount.key)
            target = await attribution.target_of(conn, discount)
            if isinstance(target, attribution.Target):
                command = RecordRedemption(
                    campaign_id=target.campaign_id,
                    redemption_id=rid,
                    code=target.code,
                    contact_id=contact,
                    order_ref=payment.order_ref,
                    currency=payment.currency,
                    amount=total + discount.amount,
                    discount=discount.amount,
                    total=total,
                )
                reply = await self._send(target.campaign_id, command, f"stripe:{rid}", event_id)
                if reply.reason == Reason.CAMPAIGN_NOT_FOUND:
                    target = attribution.Unattributed("campaign_not_found", reply.detail or "")
                elif reply.outcome == "rejected" and reply.reason != Reason.REDEMPTION_EXISTS:
                    raise CommandFailed(f"record {rid}: {reply.reason} {reply.detail}")
            found = target if isinstance(target, attribution.Target) else None
            missing = target if isinstance(target, attribution.Unattributed) else None
            await conn.execute(
                """INSERT INTO stripe_redemptions (order_ref, discount_key, redemption_id,
                       campaign_id, code, amount, discount, total, unattributed, detail)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
                payment.order_ref,
                discount.key,
                rid,
                found and found.campaign_id,
                found and found.code,
                total + discount.amount,
                discount.amount,
                total,
                missing and missing.reason,
                missing and missing.detail,
            )
        await self._release_held(conn, payment.order_ref, event_id)
        return "recorded" if payment.discounts else "no_discount"

    async def _link(self, conn: Connection, link: PaymentLink, event_id: str) -> str:
        refs = [r for r in (link.charge, link.payment_intent) if r]
        await conn.executemany(
            """INSERT INTO stripe_payment_links (payment_ref, invoice_id) VALUES ($1, $2)
               ON CONFLICT DO NOTHING""",
            [(ref, link.invoice) for ref in refs],
        )
        await self._release_held(conn, link.invoice, event_id)
        return "linked"

    async def _order_of(self, conn: Connection, refund: Refund) -> asyncpg.Record | None:
        """The order a refund is against, through the invoice, the charge, the payment intent
        or a payment link."""
        refs = [r for r in (refund.charge, refund.payment_intent) if r]
        row: asyncpg.Record | None = await conn.fetchrow(
            """SELECT * FROM stripe_orders
               WHERE order_ref = $1 OR charge_id = ANY($2::text[])
                  OR payment_intent = ANY($2::text[])
                  OR order_ref IN (SELECT invoice_id FROM stripe_payment_links
                                   WHERE payment_ref = ANY($2::text[]))
               LIMIT 1 FOR UPDATE""",
            refund.invoice,
            refs,
        )
        return row

    async def _refund(self, conn: Connection, refund: Refund, event_id: str) -> str:
        order = await self._order_of(conn, refund)
        if order is None:
            await conn.execute(
                """INSERT INTO stripe_held_refunds
                       (refund_id, invoice_id, charge_id, payment_intent, fact)
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING""",
                refund.refund_id,
                refund.invoice,
                refund.charge,
                refund.payment_intent,
                json.dumps(dataclasses.asdict(refund)),
            )
            return "held"
        if await conn.fetchval(
            "SELECT 1 FROM stripe_refunds WHERE refund_id = $1", refund.refund_id
        ):
            return "refund_known"
        new = refund.amount - order["charge_refunded"] if refund.cumulative else refund.amount
        if new <= 0:
            return "refund_known"  # an earlier running total of a charge's refunds
        await conn.execute(
            """INSERT INTO stripe_refunds (refund_id, order_ref, amount) VALUES ($1, $2, $3)""",
            refund.refund_id,
            order["order_ref"],
            new,
        )
        await conn.execute(
            """UPDATE stripe_orders SET refunded = refunded + $2,
                   charge_refunded = charge_refunded + $3 WHERE order_ref = $1""",
            order["order_ref"],
            new,
            new if refund.cumulative else 0,
        )
        if order["reversed"]:
            return "order_reversed"
        rows = await conn.fetch(
            """SELECT * FROM stripe_redemptions WHERE order_ref = $1 ORDER BY discount_key""",
            order["order_ref"],
        )
        if order["refunded"] + new >= order["amount_paid"]:
            await self._reverse_all(conn, order["order_ref"], rows, refund, event_id)
            return "reversed"
        shares = split(new, [r["total"] for r in rows])
        for row, share in zip(rows, shares, strict=True):
            if share == 0:
                continue
            await conn.execute(
                """UPDATE stripe_redemptions SET refunded = refunded + $3
                   WHERE order_ref = $1 AND discount_key = $2""",
                row["order_ref"],
                row["discount_key"],
                share,
            )
            if row["campaign_id"] is None:
                continue
            command = RefundRedemption(
                campaign_id=row["campaign_id"],
                redemption_id=row["redemption_id"],
                refund_id=refund.refund_id,
                currency=order["currency"],
                refunded=share,
                reason=f"stripe refund {refund.refund_id}",
            )
            key = f"stripe:{row['redemption_id']}:{refund.refund_id}"
            reply = await self._send(row["campaign_id"], command, key, event_id)
            if reply.outcome == "rejected" and reply.reason != Reason.ALREADY_REVERSED:
                raise CommandFailed(f"refund {refund.refund_id}: {reply.reason} {reply.detail}")
        return "refunded"

    async def _reverse_all(
        self,
        conn: Connection,
        order_ref: str,
        rows: list[asyncpg.Record],
        refund: Refund,
        event_id: str,
    ) -> None:
        await conn.execute(
            "UPDATE stripe_orders SET reversed = true WHERE order_ref = $1", order_ref
        )
        for row in rows:
            if row["campaign_id"] is None:
                continue
            command = ReverseRedemption(
                campaign_id=row["campaign_id"],
                redemption_id=row["redemption_id"],
                reason=f"stripe refund {refund.refund_id}",
            )
            key = f"stripe:{row['redemption_id']}:reverse"
            reply = await self._send(row["campaign_id"], command, key, event_id)
            if reply.outcome == "rejected" and reply.reason != Reason.ALREADY_REVERSED:
                raise CommandFailed(f"reverse {row['redemption_id']}: {reply.reason}")

    async def release_held(self, conn: Connection) -> int:
        """Apply held refunds whose order is known by now. Catches the refund held by one
        partition while the payment was being recorded, uncommitted, by another."""
        held = await conn.fetch(
            """DELETE FROM stripe_held_refunds WHERE refund_id IN (
                   SELECT h.refund_id FROM stripe_held_refunds h
                   WHERE EXISTS (
                       SELECT 1 FROM stripe_orders o
                       WHERE o.order_ref = h.invoice_id OR o.charge_id = h.charge_id
                          OR o.payment_intent = h.payment_intent
                          OR o.order_ref IN (SELECT invoice_id FROM stripe_payment_links l
                                             WHERE l.payment_ref IN (h.charge_id,
                                                                     h.payment_intent)))
                   FOR UPDATE SKIP LOCKED)
               RETURNING fact, held_at"""
        )
        for row in sorted(held, key=lambda r: r["held_at"]):
            await self._refund(conn, Refund(**json.loads(row["fact"])), "held")
        return len(held)

    async def _release_held(self, conn: Connection, invoice_id: str, event_id: str) -> None:
        """Apply the refunds that waited for this order, oldest first."""
        held = await conn.fetch(
            """DELETE FROM stripe_held_refunds
               WHERE invoice_id = $1
                  OR charge_id IN (SELECT charge_id FROM stripe_orders WHERE order_ref = $1)
                  OR payment_intent IN (SELECT payment_intent FROM stripe_orders
                                        WHERE order_ref = $1)
                  OR charge_id IN (SELECT payment_ref FROM stripe_payment_links
                                   WHERE invoice_id = $1)
                  OR payment_intent IN (SELECT payment_ref FROM stripe_payment_links
                                        WHERE invoice_id = $1)
               RETURNING fact, held_at""",
            invoice_id,
        )
        for row in sorted(held, key=lambda r: r["held_at"]):
            await self._refund(conn, Refund(**json.loads(row["fact"])), event_id)
