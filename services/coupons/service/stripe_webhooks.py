"""Stripe's webhooks: verify, append to Kafka, answer. No domain work here.

The `Stripe-Signature` header is checked over the raw body with the endpoint secret (Stripe's
scheme, through the `stripe` SDK), then the timestamp against the tolerance. A verified event
is appended to the stripe-events topic, keyed by its Stripe event id, with acks=all, before
the answer: once Stripe is told yes, the event is durable. Every verified event is kept,
handled or not; the translator (`services/coupons/stripe/consumer.py`) decides what it
means."""

import json
import time

import stripe

from services.coupons.runtime import Runtime
from services.coupons.service.refusals import Refused


async def receive(runtime: Runtime, body: bytes, signature: str | None) -> dict[str, bool]:
    """Verify the event signed by Stripe and append it; refused when no webhook secret is
    configured (`stripe_not_configured`) or the signature or payload is bad."""
    secret = runtime.settings.stripe_webhook_secret
    if not secret:
        raise Refused("stripe_not_configured", "STRIPE_WEBHOOK_SECRET is not set")
    event = verify(body, signature, secret, runtime.settings.stripe_webhook_tolerance_s)
    await runtime.stripe_sink.append(str(event["id"]), str(event["type"]), body)
    return {"received": True}


def verify(body: bytes, header: str | None, secret: str, tolerance_s: int) -> dict[str, object]:
    """The event, once its signature and timestamp are good; `Refused` otherwise
    (`signature_missing`, `signature_invalid`, `signature_expired`, `invalid_payload`)."""
    if not header:
        raise Refused("signature_missing", "no Stripe-Signature header", field="header")
    try:
        stripe.WebhookSignature.verify_header(body.decode("utf-8"), header, secret, None)
    except (stripe.SignatureVerificationError, UnicodeDecodeError) as error:
        message = "the signature does not match"
        raise Refused("signature_invalid", message, field="header") from error
    signed_at = int(dict(p.split("=", 1) for p in header.split(",") if "=" in p)["t"])
    if abs(time.time() - signed_at) > tolerance_s:
        message = f"signed more than {tolerance_s} s from now"
        raise Refused("signature_expired", message, field="header")
    try:
        event = json.loads(body)
    except ValueError as error:
        raise Refused("invalid_payload", "the body is not JSON", field="body") from error
    if not (
        isinstance(event, dict)
        and event.get("object") == "event"
        and isinstance(event.get("id"), str)
        and isinstance(event.get("type"), str)
        and isinstance((event.get("data") or {}).get("object"), dict)
    ):
        message = "not a Stripe event (object, id, type and data.object are required)"
        raise Refused("invalid_payload", message, field="body")
    return event
