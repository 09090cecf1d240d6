"""A campaign: its funnel, daily redemptions and revenue (an SVG drawn on the server, with the
same numbers in a table), breakdowns by channel and source, refusals by reason, its codes and
the audit trail. The attribution figures are those of `GET /v1/campaigns/{id}/stats` (but
unique contacts), read from the ledger's running totals (`projections.ledger_totals`) rather
than summed from every redemption; usage from `projections.usage.get`, the trail from
`projections.campaigns.audit`."""

from datetime import UTC, date, datetime, timedelta
from typing import Annotated
from uuid import uuid4

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse

from projections import campaigns, ledger_totals, usage
from services.coupons.api.commands import runtime_of
from services.coupons.api.errors import ApiError
from services.coupons.dashboard.pages import campaign_codes, campaign_mirror
from services.coupons.dashboard.session import SignedIn
from services.coupons.dashboard.templating import render

router = APIRouter()

DAYS = 30


@router.get("/campaigns/{campaign_id}")
async def campaign_page(
    request: Request,
    session: SignedIn,
    campaign_id: Annotated[str, Path(max_length=100)],
    refused: Annotated[str, Query(max_length=60, pattern="^[a-z_]*$")] = "",
    field: Annotated[str, Query(max_length=60, pattern=r"^[a-z_.]*$")] = "",
    codes_q: Annotated[str, Query(max_length=200)] = "",
    codes_after: Annotated[str, Query(max_length=64)] = "",
) -> HTMLResponse:
    until = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(1)
    since = until - timedelta(DAYS)
    async with runtime_of(request).pool.acquire() as conn:
        campaign = await campaigns.get(conn, campaign_id)
        if campaign is None:
            raise ApiError(404, "campaign_not_found", f"no campaign {campaign_id}")
        counts = await usage.get(conn, campaign_id)
        first, last = date(2000, 1, 1), until.date()
        (totals,) = await ledger_totals.daily(conn, campaign_id, first, last)
        daily = await ledger_totals.daily(conn, campaign_id, since.date(), last, "day")
        channels = await ledger_totals.daily(conn, campaign_id, first, last, "channel")
        sources = await ledger_totals.daily(conn, campaign_id, first, last, "source_ref")
        trail = await campaigns.audit(conn, campaign_id)
        codes = await campaign_codes.codes(conn, campaign_id, codes_q.strip(), codes_after)
        batches = await campaign_codes.batches(conn, campaign_id)
        mirrors = await campaign_mirror.mirrors(conn, campaign_id)
    by_day = {row["day"]: row for row in daily}
    days = [(since + timedelta(i)).date() for i in range(DAYS)]
    series = [(d, by_day.get(d, {}).get("redeemed", 0), by_day.get(d, {}).get("net_revenue", 0))
              for d in days]  # fmt: skip
    return render(
        request,
        "campaign.html",
        session,
        campaign=campaign,
        counts=counts or {},
        totals=totals,
        series=series,
        quiet=not any(redeemed or revenue for _, redeemed, revenue in series),
        top_redeemed=max([r for _, r, _ in series] + [1]),
        top_revenue=max([v for _, _, v in series] + [1]),
        channels=channels,
        sources=sources,
        trail=list(reversed(trail))[:50],
        currency=campaign["discount"].get("currency"),
        refused=refused,
        refused_field=field,
        codes=codes[: campaign_codes.PAGE_SIZE],
        codes_more=len(codes) > campaign_codes.PAGE_SIZE,
        codes_q=codes_q,
        codes_after=codes_after,
        batches=batches,
        mirrors=mirrors,
        stripe=runtime_of(request).settings.stripe_api_key is not None,
        idempotency_key=uuid4().hex,  # one per rendered form: a double submit is one effect
    )
