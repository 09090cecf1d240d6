"""What a router takes from its request to call a use case (`services/coupons/service/`):
the runtime, and the `Call` (the actor that authenticated, the correlation id)."""

from fastapi import Request

from services.coupons.runtime import Runtime
from services.coupons.service.calls import Call


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def call_of(request: Request) -> Call:
    """The use-case call of an authenticated request (`auth.authorised` set its actor)."""
    state = request.state
    return Call(runtime_of(request), getattr(state, "actor", None), str(state.correlation_id))
