"""Events: facts the decider appended to the event log, named in the past tense.

The event log is the source of truth; projections and the decider's own state are folds over it.
"""

from typing import Annotated, Literal

from pydantic import Field

from contracts.base import CampaignId, Frozen
from contracts.commands import CampaignName
from contracts.money import Discount
from contracts.reasons import Reason


class CampaignDefined(Frozen):
    type: Literal["coupon.campaign_defined.v1"] = "coupon.campaign_defined.v1"
    campaign_id: CampaignId
    name: CampaignName
    discount: Discount


class CommandRejected(Frozen):
    """A decision to refuse a command, kept in the log so refusals are auditable and counted."""

    type: Literal["coupon.command_rejected.v1"] = "coupon.command_rejected.v1"
    campaign_id: CampaignId
    command_type: str
    reason: Reason
    detail: str


Event = Annotated[CampaignDefined | CommandRejected, Field(discriminator="type")]
EVENT_TYPES: tuple[type[Frozen], ...] = (CampaignDefined, CommandRejected)
