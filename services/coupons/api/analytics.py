"""Read models for growth teams and analysts: usage, a contact's coupons, campaign attribution
and the redemption ledger, as JSON and as CSV. All need the `analyst` scope."""

import csv
import io
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime, BaseModel

from contracts import bounds
from projections import contacts, ledger, usage
from projections.ledger import Grouping
from services.coupons.api.auth import require
from services.coupons.api.commands import runtime_of
from services.coupons.api.errors import ApiError, ErrorResponse
from services.coupons.api.params import CampaignPath, ContactPath, Cursor

router = APIRouter(prefix="/v1", tags=["analytics"], dependencies=[Depends(require("analyst"))])
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 422)
}
MAX_CONTACT_ROWS = 1000
MAX_RANGE_DAYS = 3660


class Refusals(BaseModel):
    command_type: str
    reason: str
    refused: int


class Usage(BaseModel):
    campaign_id: str
    issued: int
    distributed: int
    redeemed: int
    reversed: int
    active_redemptions: int
    max_redemptions: int | None
    remaining: int | None
    budget: int | None
    budget_spent: int
    budget_left: int | None
    refusals: list[Refusals]


class ContactCoupon(BaseModel):
    activity: str
    campaign_id: str
    code: str
    channel: str | None
    source_ref: str | None
    redemption_id: str | None
    order_ref: str | None
    currency: str | None
    amount: int | None
    discount: int | None
    total: int | None
    refunded: int | None
    occurred_at: AwareDatetime


class ContactCoupons(BaseModel):
    contact_id: str
    data: list[ContactCoupon]
    next_cursor: str | None


class StatsRow(BaseModel):
    day: date | None = None
    channel: str | None = None
    source_ref: str | None = None
    distributed: int
    redeemed: int
    unique_contacts: int
    conversion_rate: float | None
    gross_revenue: int
    discount_given: int
    net_revenue: int
    refunded: int
    reversals: int


class Stats(BaseModel):
    campaign_id: str
    since: date
    until: date
    group_by: list[Grouping]
    data: list[StatsRow]


Since = Annotated[date | None, Query(alias="from", description="first UTC day, inclusive")]
Until = Annotated[date | None, Query(alias="to", description="last UTC day, inclusive")]
GroupBy = Annotated[list[Grouping] | None, Query(description="any of day, channel, source")]


def _range(since: date | None, until: date | None) -> tuple[date, date, datetime, datetime]:
    """Default: the 30 days up to today (UTC). Returns the days and [start, end) instants."""
    until = until or datetime.now(UTC).date()
    since = since or until - timedelta(days=29)
    for day, name in ((since, "from"), (until, "to")):
        if not bounds.MIN_TIME.date() <= day < bounds.MAX_TIME.date():
            message = f"`{name}` must be from 2000-01-01 to before 2200-01-01"
            raise ApiError(422, "invalid_range", message, field=f"query.{name}")
    if since > until:
        raise ApiError(422, "invalid_range", "`from` is after `to`", field="query.from")
    if (until - since).days >= MAX_RANGE_DAYS:
        raise ApiError(422, "invalid_range", "the range is over 10 years", field="query.from")
    start = datetime.combine(since, time(), UTC)
    return since, until, start, datetime.combine(until + timedelta(days=1), time(), UTC)


@router.get("/campaigns/{campaign_id}/usage", response_model=Usage, responses=ERRORS)
async def get_usage(campaign_id: CampaignPath, request: Request) -> dict[str, Any]:
    """Issued, distributed, redeemed, reversed, remaining under `max_redemptions`, budget spent
    and left, and refused commands by reason (projection `usage`)."""
    async with runtime_of(request).pool.acquire() as conn:
        found = await usage.get(conn, campaign_id)
    if found is None:
        raise ApiError(404, "campaign_not_found", f"no campaign {campaign_id}")
    return found


@router.get("/contacts/{contact_id}/coupons", response_model=ContactCoupons, responses=ERRORS)
async def contact_coupons(
    contact_id: ContactPath,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=MAX_CONTACT_ROWS)] = 100,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Every coupon distributed to the contact and every redemption, reversal and refund they
    made, oldest first; pass `next_cursor` back as `cursor` for the next page."""
    async with runtime_of(request).pool.acquire() as conn:
        after = None
        if cursor is not None:
            after = await contacts.position(conn, contact_id, _event_id(cursor))
            if after is None:
                raise _invalid_cursor()
        rows = await contacts.coupons(conn, contact_id, limit, after)
    next_cursor = str(rows[-1]["event_id"]) if len(rows) == limit else None
    return {"contact_id": contact_id, "data": rows, "next_cursor": next_cursor}


def _event_id(cursor: str) -> UUID:
    try:
        return UUID(cursor)
    except ValueError as error:
        raise _invalid_cursor() from error


def _invalid_cursor() -> ApiError:
    return ApiError(422, "invalid_cursor", "cursor is not one this API returned", field="cursor")


@router.get("/campaigns/{campaign_id}/stats", response_model=Stats, responses=ERRORS)
async def campaign_stats(
    campaign_id: CampaignPath,
    request: Request,
    since: Since = None,
    until: Until = None,
    group_by: GroupBy = None,
) -> dict[str, Any]:
    """Attribution between `from` and `to` (UTC days, inclusive), grouped by any of `day`,
    `channel`, `source` (repeat `group_by`); no grouping gives one total row."""
    first, last, rows = await _stats(request, campaign_id, since, until, group_by)
    grouping = list(dict.fromkeys(group_by or []))
    return {
        "campaign_id": campaign_id,
        "since": first,
        "until": last,
        "group_by": grouping,
        "data": rows,
    }


@router.get("/campaigns/{campaign_id}/stats.csv", responses=ERRORS)
async def campaign_stats_csv(
    campaign_id: CampaignPath,
    request: Request,
    since: Since = None,
    until: Until = None,
    group_by: GroupBy = None,
) -> StreamingResponse:
    """The same rows as `/stats`, as CSV, one column per grouping then every figure."""
    _, _, rows = await _stats(request, campaign_id, since, until, group_by)
    header = ledger.stats_columns(tuple(dict.fromkeys(group_by or [])))

    async def body() -> AsyncIterator[str]:
        yield _csv([header])
        yield _csv([[r[c] for c in header] for r in rows])

    return _attachment(body(), f"{campaign_id}-stats.csv")


@router.get("/ledger.csv", responses=ERRORS)
async def ledger_csv(
    request: Request,
    since: Since = None,
    until: Until = None,
    campaign_id: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] = None,
) -> StreamingResponse:
    """Every redemption made between `from` and `to` (UTC days, inclusive), optionally of one
    campaign, oldest first, streamed in pages: the revenue ledger attribution sums."""
    _, _, start, end = _range(since, until)
    pool = runtime_of(request).pool
    header = [c.strip() for c in ledger.LEDGER_COLUMNS.split(",")]

    async def body() -> AsyncIterator[str]:
        yield _csv([header])
        after: tuple[datetime, str] | None = None
        while True:
            async with pool.acquire() as conn:
                page = await ledger.ledger_page(conn, start, end, campaign_id, 10_000, after)
            if not page:
                return
            yield _csv([[r[c] for c in header] for r in page])
            after = (page[-1]["redeemed_at"], page[-1]["redemption_id"])

    return _attachment(body(), "ledger.csv")


async def _stats(
    request: Request,
    campaign_id: str,
    since: date | None,
    until: date | None,
    group_by: list[Grouping] | None,
) -> tuple[date, date, list[dict[str, Any]]]:
    first, last, start, end = _range(since, until)
    grouping = tuple(dict.fromkeys(group_by or []))
    async with runtime_of(request).pool.acquire() as conn:
        if await usage.get(conn, campaign_id) is None:
            raise ApiError(404, "campaign_not_found", f"no campaign {campaign_id}")
        rows = await ledger.stats(conn, campaign_id, start, end, grouping)
    return first, last, rows


def _csv(rows: Iterable[list[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    for row in rows:
        writer.writerow(
            ["" if v is None else v.isoformat() if hasattr(v, "isoformat") else v for v in row]
        )
    return out.getvalue()


def _attachment(body: AsyncIterator[str], filename: str) -> StreamingResponse:
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    return StreamingResponse(body, media_type="text/csv", headers=headers)
