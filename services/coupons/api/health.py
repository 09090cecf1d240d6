"""Liveness, readiness and the published contracts."""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from contracts.asyncapi import document
from projections import metrics, parked
from services.coupons.runtime import Runtime

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "not ready; `checks` says why"}})
async def readyz(request: Request) -> JSONResponse:
    """Kafka and PostgreSQL reachable, every component running, projections caught up
    (lag at most COUPONS_READY_MAX_LAG events)."""
    runtime: Runtime = request.app.state.runtime
    checks: dict[str, Any] = {}
    try:
        async with runtime.pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
        checks["postgres"] = "ok"
    except (OSError, Exception) as error:  # noqa: BLE001 - any failure means not ready
        checks["postgres"] = f"unreachable: {type(error).__name__}"
    try:
        lag = await runtime.lag()
        checks["kafka"] = "ok"
        checks["projection_lag"] = lag
        behind = {k: v for k, v in lag.items() if v > runtime.settings.ready_max_lag}
        if behind:
            checks["projections"] = f"behind: {behind}"
    except Exception as error:  # noqa: BLE001 - any failure means not ready
        checks["kafka"] = f"unreachable: {type(error).__name__}"
    parked_here = {f"{c}:{r}": n for (c, r), n in sorted(parked.PARKED.items())}
    parked_here.update({f"projector:{p}:{r}": n for (p, r), n in metrics.DEAD_LETTERS.items()})
    if parked_here:  # loud, but the service serves: docs/architecture.md, "Parked messages"
        checks["parked"] = parked_here
    if not runtime.view.caught_up:
        checks["campaign_view"] = "catching up with the event log"
    unhealthy = runtime.unhealthy_components()
    if not runtime.gateway.healthy():
        unhealthy.append("gateway")
    if unhealthy:
        checks["components"] = f"crashed or restarting: {unhealthy}"
    ready = (
        checks.get("postgres") == "ok"
        and checks.get("kafka") == "ok"
        and not ({"projections", "components", "campaign_view"} & checks.keys())
    )
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


@router.get("/asyncapi.json")
async def asyncapi(request: Request) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every topic and message."""
    runtime: Runtime = request.app.state.runtime
    return document(runtime.topics, runtime.settings.kafka_bootstrap_servers, request.app.version)
