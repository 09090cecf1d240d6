"""The Stripe API version this bridge targets, pinned in one place.

Webhook endpoints must be created with this version (Stripe shapes each event's object by the
endpoint's version), and every API call sends it. The translator also reads the shapes of the
versions before it that differ (docs/stripe.md lists them)."""

STRIPE_API_VERSION = "2025-09-30.clover"
