"""`POST /v1/webhooks/stripe`: verify, append to Kafka, answer. No domain work here.

The `Stripe-Signature` header is checked over the raw body with the endpoint secret (Stripe's
scheme, through the `stripe` SDK), then the timestamp against the tolerance. A verified event
is appended to the stripe-events topic, keyed by its Stripe event id, with acks=all, before
the 200: once Stripe is told yes, the event is durable. Every verified event is kept, handled
or not; the translator (consumer.py) decides what it means.
"""

import json
import time

import stripe
from fastapi import APIRouter, Request

from services.coupons.api.errors import ApiError, ErrorResponse
from services.coupons.runtime import Runtime

router = APIRouter(tags=["stripe"])


def verify(body: bytes, header: str | None, secret: str, tolerance_s: int) -> dict[str, object]:
    """The event, once its signature and timestamp are good; `ApiError` 400 otherwise."""
    if not header:
        raise ApiError(400, "signature_missing", "no Stripe-Signature header", field="header")
    try:
        stripe.WebhookSignature.verify_header(body.decode("utf-8"), header, secret, None)
    except (stripe.SignatureVerificationError, UnicodeDecodeError) as error:
        raise ApiError(
            400, "signature_invalid", "the signature does not match", field="header"
        ) from error
    signed_at = int(dict(p.split("=", 1) for p in header.split(",") if "=" in p)["t"])
    if abs(time.time() - signed_at) > tolerance_s:
        message = f"signed more than {tolerance_s} s from now"
        raise ApiError(400, "signature_expired", message, field="header")
    try:
        event = json.loads(body)
    except ValueError as error:
        raise ApiError(400, "invalid_payload", "the body is not JSON", field="body") from error
    if not (
        isinstance(event, dict)
        and event.get("object") == "event"
        and isinstance(event.get("id"), str)
        and isinstance(event.get("type"), str)
        and isinstance((event.get("data") or {}).get("object"), dict)
    ):
        message = "not a Stripe event (object, id, type and data.object are required)"
        raise ApiError(400, "invalid_payload", message, field="body")
    return event


@router.post(
    "/v1/webhooks/stripe",
    responses={
        400: {"model": ErrorResponse, "description": "bad signature or payload"},
        503: {"model": ErrorResponse, "description": "no webhook secret configured"},
    },
)
async def stripe_webhook(request: Request) -> dict[str, bool]:
    """Stripe's webhook endpoint: signed by Stripe, no API key."""
    runtime: Runtime = request.app.state.runtime
    secret = runtime.settings.stripe_webhook_secret
    if not secret:
        raise ApiError(503, "stripe_not_configured", "STRIPE_WEBHOOK_SECRET is not set")
    body = await request.body()
    event = verify(
        body,
        request.headers.get("stripe-signature"),
        secret,
        runtime.settings.stripe_webhook_tolerance_s,
    )
    await runtime.stripe_sink.append(str(event["id"]), str(event["type"]), body)
    return {"received": True}
