"""Projection progress for operators: `/metrics` in the Prometheus text format and
`GET /v1/projections`, the same figures as JSON with each partition's offsets."""

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse

from projections import metrics
from services.coupons import loop_lag, parked
from services.coupons.api.auth import require
from services.coupons.api.commands import runtime_of
from services.coupons.runtime import PROJECTIONS

router = APIRouter(tags=["operations"])


async def _status(request: Request) -> list[dict[str, Any]]:
    runtime = runtime_of(request)
    ends, projected = await runtime.event_ends(), await runtime.projected()
    found = []
    for projection in PROJECTIONS:
        stored = projected[projection.name]
        partitions = [
            {
                "partition": partition,
                "next_offset": stored.get(partition, 0),
                "end_offset": end,
                "lag": max(0, end - stored.get(partition, 0)),
            }
            for partition, end in ends.items()
        ]
        found.append(
            {
                "name": projection.name,
                "lag": sum(p["lag"] for p in partitions),
                "rebuildable": bool(projection.tables),
                "applied": metrics.APPLIED[projection.name],
                "dead_letters": {
                    reason: n
                    for (name, reason), n in sorted(metrics.DEAD_LETTERS.items())
                    if name == projection.name
                },
                "partitions": partitions,
            }
        )
    return found


@router.get("/v1/projections", dependencies=[Depends(require("analyst"))])
async def projections(request: Request) -> dict[str, Any]:
    """Each projection's lag (events appended, not yet applied) per partition and in total;
    `applied` and `dead_letters` count this replica's runners since it started."""
    return {"data": await _status(request)}


@router.get("/metrics", response_class=PlainTextResponse)
async def prometheus(request: Request) -> str:
    """Prometheus text format: lag per projection, events applied and dead letters by
    projection and reason (counters of this replica), and its event loop's lag."""
    status = await _status(request)
    lines = [
        "# HELP coupons_projection_lag_events Events appended to the topic, not yet applied.",
        "# TYPE coupons_projection_lag_events gauge",
        *(f'coupons_projection_lag_events{{projection="{p["name"]}"}} {p["lag"]}' for p in status),
        "# HELP coupons_projection_events_applied_total Events applied by this replica.",
        "# TYPE coupons_projection_events_applied_total counter",
        *(
            f'coupons_projection_events_applied_total{{projection="{p["name"]}"}} {p["applied"]}'
            for p in status
        ),
        "# HELP coupons_projection_dead_letters_total Unreadable events sent to the dead-letter"
        " topic by this replica.",
        "# TYPE coupons_projection_dead_letters_total counter",
        *(
            f'coupons_projection_dead_letters_total{{projection="{p["name"]}",reason="{reason}"}}'
            f" {n}"
            for p in status
            for reason, n in p["dead_letters"].items()
        ),
        "# HELP coupons_parked_total Messages the decider, the campaign view or the Stripe"
        " translator could not process and parked (docs/architecture.md), by this replica.",
        "# TYPE coupons_parked_total counter",
        *(
            f'coupons_parked_total{{consumer="{consumer}",reason="{reason}"}} {n}'
            for (consumer, reason), n in sorted(parked.PARKED.items())
        ),
        *loop_lag.LAG.lines("coupons_event_loop_lag_seconds"),
    ]
    return "\n".join(lines) + "\n"
