"""A campaign's stock of unique codes: `CodesLow` when a distribution makes the codes left
fall to `limits.codes_low_at` (services/coupons/code_stock.py tops it up). Pure."""

from contracts.events import CodesLow, Event
from services.coupons.domain.campaign_state import Campaign


def codes_low_after(campaign: Campaign, contact_id: str, code: str) -> list[Event]:
    """`CodesLow` when giving out `code` makes the unique codes left fall to the campaign's
    `limits.codes_low_at`: once per crossing (a top-up raises the stock above it again)."""
    low_at = campaign.limits.codes_low_at
    if low_at is None or contact_id in campaign.holders or not campaign.is_unique(code):
        return []
    left = campaign.unique_left() - 1
    if left != low_at:
        return []
    top_up = campaign.limits.codes_top_up
    return [CodesLow(campaign_id=campaign.id, remaining=left, low_at=low_at, top_up=top_up)]
