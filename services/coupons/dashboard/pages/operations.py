"""Operations: what an operator checks first. Each projection's lag (events appended, not yet
applied), the messages this process parked or sent to a dead-letter topic, and the health of
every component (the figures of `/readyz` and `GET /v1/projections`, from the same runtime),
and the last Stripe reconciliation's findings (`coupons stripe reconcile` records them).
Kafka or PostgreSQL away shows as "unreachable" on the page, never as an error page."""

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from projections import metrics
from services.coupons import parked
from services.coupons.api.commands import runtime_of
from services.coupons.api.health import CHECK_TIMEOUT_S
from services.coupons.dashboard.session import SignedIn
from services.coupons.dashboard.templating import render
from services.coupons.runtime import Runtime, lag_of
from services.coupons.store import reconciliations

router = APIRouter()

FINDINGS_SHOWN = 100


async def _reached(work: Any) -> tuple[Any, str | None]:
    try:
        return await asyncio.wait_for(work, CHECK_TIMEOUT_S), None
    except TimeoutError:
        return None, f"no answer within {CHECK_TIMEOUT_S:g} s"
    except Exception as error:  # noqa: BLE001 - the page says which dependency failed, and how
        return None, f"{type(error).__name__}: {error}"[:300]


@router.get("/operations")
async def operations_page(request: Request, session: SignedIn) -> HTMLResponse:
    runtime = runtime_of(request)
    (ends, kafka), (projected, postgres), (reconciled, _) = await asyncio.gather(
        _reached(runtime.event_ends()), _reached(runtime.projected()), _reached(_last_run(runtime))
    )
    lag = lag_of(ends, projected) if ends is not None and projected is not None else {}
    components = [
        {"name": c.name, "healthy": c.healthy, "problem": c.problem} for c in runtime.components
    ]
    components.append({"name": "gateway", "healthy": runtime.gateway.healthy(), "problem": None})
    if runtime.decider is not None:
        components.append(
            {
                "name": "decider partitions",
                "healthy": runtime.decider.ready,
                "problem": None if runtime.decider.ready else "joining the group, folding the log",
            }
        )
    return render(
        request,
        "operations.html",
        session,
        kafka=kafka,
        postgres=postgres,
        lag=sorted(lag.items()),
        ready_max_lag=runtime.settings.ready_max_lag,
        view_caught_up=runtime.view.caught_up,
        components=components,
        parked=sorted(parked.PARKED.items()),
        dead_letters=sorted(metrics.DEAD_LETTERS.items()),
        reconciled=reconciled,
        postgres_reached=postgres is None,
    )


async def _last_run(runtime: Runtime) -> reconciliations.Run | None:
    async with runtime.pool.acquire() as conn:
        return await reconciliations.last(conn, FINDINGS_SHOWN)
