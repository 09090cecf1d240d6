"""Who calls a use case, on which runtime, and the one rule for idempotency keys."""

from typing import NamedTuple
from uuid import uuid4

from services.coupons.runtime import Runtime


class Call(NamedTuple):
    """One call of a use case: the runtime it runs on, the actor (an API key's id and name,
    recorded in the audit trail and counted by the guessing throttle) and the correlation id
    that every command it sends carries. A named tuple, made on every request (see
    `domain.refusals.Priced`)."""

    runtime: Runtime
    actor: str | None
    correlation_id: str


def key_or_fresh(idempotency_key: str | None) -> str:
    """The caller's idempotency key, or a fresh one when it sent none (then a retry is a new
    request; the key is given back so the caller can retry with it)."""
    return idempotency_key or uuid4().hex
