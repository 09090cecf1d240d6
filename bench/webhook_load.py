"""Stripe webhook load as Stripe sends it: paid invoices discounted by one campaign's coupon,
each event delivered until it gets a 2xx (Stripe retries a failed delivery with the same event
id and body, signed anew). Used by `bench/chaos.py`."""

import asyncio
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.coupons.stripe.translate import redemption_id
from tests import stripe_payloads as sp


@dataclass
class WebhookLoad:
    base_url: str
    secret: str
    campaign_id: str
    code: str
    clients: int = 2
    delivered: dict[str, str] = field(default_factory=dict)
    """Stripe event id -> the redemption id its invoice must become."""
    errors: list[str] = field(default_factory=list)
    """Answers that are neither a 2xx nor a 503 with an error code (Stripe would retry them,
    but they should not happen)."""
    _stop: bool = False

    def stop(self) -> None:
        """Send no new event; those in flight are still delivered until answered."""
        self._stop = True

    async def run(self, pace_s: float = 0.1) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=30) as http:
            await asyncio.gather(*(self._client(http, pace_s) for _ in range(self.clients)))

    async def _client(self, http: httpx.AsyncClient, pace_s: float) -> None:
        while not self._stop:
            await self.deliver(http)
            await asyncio.sleep(pace_s)

    async def deliver(self, http: httpx.AsyncClient) -> str:
        """One paid invoice, delivered until answered 2xx; its redemption id."""
        coupon = sp.coupon(
            metadata={"growthos_campaign_id": self.campaign_id, "growthos_code": self.code}
        )
        discount = sp.discount(sp.sid("cus"), coupon)
        invoice = sp.invoice(discount["customer"], [(discount["id"], 980)], 4900)
        invoice["discounts"] = [discount]
        document = sp.event("invoice.paid", invoice)
        body = sp.body_of(document)
        while True:
            headers = {"Stripe-Signature": sp.sign(body, self.secret)}
            try:
                answer = await http.post("/v1/webhooks/stripe", content=body, headers=headers)
            except httpx.TransportError:
                await asyncio.sleep(0.5)
                continue
            if answer.status_code < 300:
                found = redemption_id(invoice["id"], discount["id"])
                self.delivered[document["id"]] = found
                return found
            if answer.status_code != 503 or "error" not in answer.text:
                self.errors.append(f"{answer.status_code} {answer.text[:200]}")
            await asyncio.sleep(0.5)
