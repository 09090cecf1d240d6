"""Commands: requests to the campaign decider, named in the imperative.

A command may be refused; the decider answers every one on the replies topic.
"""

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from contracts.base import CampaignId, Frozen
from contracts.money import Discount

CampaignName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)
]


class DefineCampaign(Frozen):
    """Create a campaign with its discount. The campaign id is the aggregate key."""

    type: Literal["coupon.define_campaign.v1"] = "coupon.define_campaign.v1"
    campaign_id: CampaignId
    name: CampaignName
    discount: Discount


Command = Annotated[DefineCampaign, Field(discriminator="type")]
COMMAND_TYPES: tuple[type[Frozen], ...] = (DefineCampaign,)
