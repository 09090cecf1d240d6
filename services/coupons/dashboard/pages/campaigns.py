"""Campaigns: every campaign with its funnel numbers, sortable and filterable, a page at a
time. Readable without JavaScript: sorting and filtering are links and a GET form."""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from projections.db import Connection
from services.coupons.api.commands import runtime_of
from services.coupons.dashboard.session import SignedIn
from services.coupons.dashboard.templating import render

router = APIRouter()

PAGE_SIZE = 50
Sort = Literal[
    "name", "status", "distributed", "redeemed", "rate", "revenue", "discount_given",
    "budget_left", "expires_at", "defined_at",
]  # fmt: skip
SORTS: dict[str, str] = {
    "name": "c.name",
    "status": "c.status",
    "distributed": "c.distributed",
    "redeemed": "c.redemptions",
    "rate": "c.redemptions::float8 / nullif(c.distributed, 0)",
    "revenue": "l.net_revenue",
    "discount_given": "l.discount_given",
    "budget_left": "u.budget - u.budget_spent",
    "expires_at": "(c.rules #>> '{validity,expires_at}')::timestamptz",
    "defined_at": "c.defined_at",
}
COLUMNS = (
    ("name", "Campaign"),
    ("status", "Status"),
    ("distributed", "Distributed"),
    ("redeemed", "Redeemed"),
    ("rate", "Redemption rate"),
    ("revenue", "Net revenue"),
    ("discount_given", "Discount given"),
    ("budget_left", "Budget left"),
    ("expires_at", "Expires"),
)


async def listing(
    conn: Connection,
    status: str | None,
    search: str | None,
    sort: Sort,
    descending: bool,
    offset: int,
) -> list[dict[str, Any]]:
    """One page of campaigns with their numbers; net revenue (of reversals and refunds) and
    discount given from the ledger's running totals (`ledger_campaigns`), so sorting by them
    sums nothing."""
    order = f"{SORTS[sort]} {'DESC' if descending else 'ASC'} NULLS LAST, c.id"
    rows = await conn.fetch(
        f"""SELECT c.id, c.name, c.status, c.distributed, c.redemptions AS redeemed,
                   c.redemptions::float8 / nullif(c.distributed, 0) AS rate,
                   (c.rules #>> '{{validity,expires_at}}')::timestamptz AS expires_at,
                   c.discount ->> 'currency' AS currency,
                   u.budget - u.budget_spent AS budget_left,
                   l.net_revenue AS revenue, l.discount_given
            FROM campaigns c
            LEFT JOIN usage_campaigns u ON u.campaign_id = c.id
            LEFT JOIN ledger_campaigns l ON l.campaign_id = c.id
            WHERE ($1::text IS NULL OR c.status = $1)
              AND ($2::text IS NULL OR c.name ILIKE '%' || $2 || '%' OR c.id = $2)
            ORDER BY {order} LIMIT $3 OFFSET $4""",
        status,
        search,
        PAGE_SIZE + 1,
        offset,
    )
    return [dict(r) for r in rows]


@router.get("/")
async def campaigns_page(
    request: Request,
    session: SignedIn,
    status: Literal["", "active", "paused", "ended"] = "",
    q: Annotated[str, Query(max_length=200)] = "",
    sort: Sort = "defined_at",
    desc: bool = True,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> HTMLResponse:
    async with runtime_of(request).pool.acquire() as conn:
        rows = await listing(conn, status or None, q.strip() or None, sort, desc, offset)
    return render(
        request,
        "campaigns.html",
        session,
        campaigns=rows[:PAGE_SIZE],
        more=len(rows) > PAGE_SIZE,
        filters={"status": status, "q": q, "sort": sort, "desc": desc, "offset": offset},
        page_size=PAGE_SIZE,
        columns=COLUMNS,
    )
