"""`POST /v1/webhooks/stripe`: Stripe's webhook endpoint, signed by Stripe, no API key. The
use case (verify, append to Kafka, answer) is `services/coupons/service/stripe_webhooks.py`."""

from fastapi import APIRouter, Request

from services.coupons.api.commands import runtime_of
from services.coupons.api.errors import ErrorResponse
from services.coupons.service import stripe_webhooks

router = APIRouter(tags=["stripe"])


@router.post(
    "/v1/webhooks/stripe",
    responses={
        400: {"model": ErrorResponse, "description": "bad signature or payload"},
        503: {"model": ErrorResponse, "description": "no webhook secret configured"},
    },
)
async def stripe_webhook(request: Request) -> dict[str, bool]:
    """Stripe's webhook endpoint: signed by Stripe, no API key."""
    body = await request.body()
    signature = request.headers.get("stripe-signature")
    return await stripe_webhooks.receive(runtime_of(request), body, signature)
