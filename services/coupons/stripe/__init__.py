"""The Stripe bridge: signed webhooks in, redemptions and refunds out (docs/stripe.md)."""
