"""Public events for other GrowthOS services, on their own topics. Unlike the event log,
these are notifications: sequence engines (email sequences, broadcasts, in-app nudges)
consume them and embed the code in what they send."""

from typing import Literal

from pydantic import AwareDatetime

from contracts.base import CampaignId, Frozen
from contracts.commands import Channel, Code


class CouponIssued(Frozen):
    """A code was given to a contact: send it. Keyed by contact id on `coupons.issued.v1`."""

    type: Literal["coupon.issued.v1"] = "coupon.issued.v1"
    code: Code
    contact_id: str
    email: str | None
    campaign_id: CampaignId
    campaign_name: str
    expires_at: AwareDatetime | None
    summary: str
    """The discount in words, e.g. "20% off (up to EUR 50.00), on one invoice"."""
    channel: Channel
    source_ref: str | None
    distribution_id: str
