"""The use cases: define, change and distribute campaigns, validate, redeem and reverse, hold
and release reservations, generate codes, mirror to Stripe; define, change and read segments
and upload static ones; ingest contact events and read profiles; receive Stripe's webhooks.

Each is a function of a `Call` (the runtime, the actor, the correlation id) and plain values
(an idempotency key, a body model), returning results or raising `Refused` with a stable
code. Nothing here knows HTTP: the routers in `api/`, the checkout lane and the dashboard are
thin adapters that parse, call, and map a `Refused` to a status (`api/errors.py`)."""
