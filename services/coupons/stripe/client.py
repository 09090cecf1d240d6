"""The Stripe API client the bridge uses: the `stripe` SDK, at the pinned API version, with a
configurable base URL (stripe-mock or a recorded double in tests) and key."""

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import stripe

from services.coupons.settings import Settings
from services.coupons.stripe.version import STRIPE_API_VERSION


class StripeNotConfigured(RuntimeError):
    """STRIPE_API_KEY is not set."""


def client_for(settings: Settings) -> stripe.StripeClient:
    if not settings.stripe_api_key:
        raise StripeNotConfigured("set STRIPE_API_KEY to call the Stripe API")
    return stripe.StripeClient(
        settings.stripe_api_key,
        stripe_version=STRIPE_API_VERSION,
        base_addresses={"api": settings.stripe_api_base},
        http_client=stripe.HTTPXClient(),
        max_network_retries=3,
    )


async def paid_invoices(
    client: stripe.StripeClient, since: datetime, until: datetime
) -> AsyncIterator[dict[str, Any]]:
    """Every invoice paid in [since, until), newest first, with its discounts expanded.
    Stripe filters by creation time, so invoices created before `since` and paid after it
    are read from a wider window and filtered on `status_transitions.paid_at`."""
    params: Any = {
        "status": "paid",
        "created": {"gte": int(since.timestamp()) - 35 * 86400, "lt": int(until.timestamp())},
        "limit": 100,
        "expand": ["data.discounts"],
    }
    page = await client.v1.invoices.list_async(params)
    while True:
        for invoice in page.data:
            document = invoice.to_dict()
            transitions = document.get("status_transitions") or {}
            paid_at = transitions.get("paid_at") or document["created"]
            if since.timestamp() <= paid_at < until.timestamp():
                yield document
        if not page.has_more:
            return
        page = await page.next_page_async()
