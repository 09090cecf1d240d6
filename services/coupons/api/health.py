"""Liveness, readiness and the published contracts."""

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from projections import metrics
from services.coupons import parked
from services.coupons.runtime import Runtime, lag_of

_T = TypeVar("_T")

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


CHECK_TIMEOUT_S = 2.0
"""How long `/readyz` waits for each dependency: an outage answers 503 at once, not after a
client's reconnect attempts."""


async def _timed(work: Awaitable[_T]) -> _T | str:
    """`work`'s result, or why it failed (its error's type and message, or a timeout)."""
    try:
        return await asyncio.wait_for(work, CHECK_TIMEOUT_S)
    except TimeoutError:
        return f"unreachable: no answer within {CHECK_TIMEOUT_S:g} s"
    except Exception as error:  # noqa: BLE001 - any failure means not ready, and says which
        return f"unreachable: {type(error).__name__}: {error}"[:300]


@router.get("/readyz", responses={503: {"description": "not ready; `checks` says why"}})
async def readyz(request: Request) -> JSONResponse:
    """Kafka and PostgreSQL reachable (each checked within 2 s, apart), every component
    running, this process's decider holding its partitions, the projections caught up (lag at
    most COUPONS_READY_MAX_LAG events), and the campaign view folded."""
    runtime: Runtime = request.app.state.runtime
    checks: dict[str, Any] = {}
    ends, projected = await asyncio.gather(
        _timed(runtime.event_ends()), _timed(runtime.projected())
    )
    checks["kafka"] = "ok" if isinstance(ends, dict) else ends
    checks["postgres"] = "ok" if isinstance(projected, dict) else projected
    if isinstance(ends, dict) and isinstance(projected, dict):
        lag = lag_of(ends, projected)
        checks["projection_lag"] = lag
        behind = {k: v for k, v in lag.items() if v > runtime.settings.ready_max_lag}
        if behind:
            checks["projections"] = f"behind: {behind}"
    if not runtime.view.caught_up:
        checks["campaign_view"] = "catching up with the event log"
    unhealthy = runtime.unhealthy_components()
    if not runtime.gateway.healthy():
        unhealthy["gateway"] = "its reader of replies stopped"
    if runtime.decider is not None and not runtime.decider.ready and "decider" not in unhealthy:
        unhealthy["decider"] = "waiting for its partitions (joining the group, folding the log)"
    if unhealthy:
        checks["components"] = unhealthy
    parked_here = {f"{c}:{r}": n for (c, r), n in sorted(parked.PARKED.items())}
    parked_here.update({f"projector:{p}:{r}": n for (p, r), n in metrics.DEAD_LETTERS.items()})
    if parked_here:  # loud, but the service serves: docs/architecture.md, "Parked messages"
        checks["parked"] = parked_here
    ready = (
        checks["postgres"] == "ok"
        and checks["kafka"] == "ok"
        and not ({"projections", "components", "campaign_view"} & checks.keys())
    )
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


@router.get("/asyncapi.json")
async def asyncapi(request: Request) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every topic and message."""
    # imported here: FastStream, which writes the document, costs half a second of every
    # process's start, and few processes are ever asked for it
    from contracts.asyncapi import document

    runtime: Runtime = request.app.state.runtime
    return document(runtime.topics, runtime.settings.kafka_bootstrap_servers, request.app.version)
