"""What a growth team sends to define, change and distribute a campaign, and what it gets."""

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, Field

from contracts.base import CampaignId
from contracts.bounds import EmailText, Id128, Label, Note, Why
from contracts.commands import CampaignName, Channel
from contracts.money import Discount
from contracts.rules import Duration, Eligibility, Limits, Validity
from services.coupons.service.refusals import ErrorBody


class CampaignRequest(BaseModel):
    id: CampaignId | None = None
    name: CampaignName
    discount: Discount
    code: Annotated[
        Label | None, Field(description="shared (vanity) code; case and '-' ignored")
    ] = None
    status: Literal["draft", "active"] = "active"
    duration: Duration = Duration()
    validity: Validity = Field(
        default_factory=Validity, description="expires_at defaults to COUPONS_DEFAULT_EXPIRY_DAYS"
    )
    limits: Limits = Limits()
    eligibility: Eligibility = Eligibility()


class CampaignUpdate(BaseModel):
    """What to change, and why. Within `validity`, `limits` and `eligibility`, only the fields
    sent change; the discount, duration and codes cannot change."""

    name: CampaignName | None = None
    validity: Validity | None = None
    limits: Limits | None = None
    eligibility: Eligibility | None = None
    reason: Annotated[Why, Field(description="why, for the audit")]


class StatusChange(BaseModel):
    status: Literal["active", "paused", "ended"]
    reason: Note = ""


class Recipient(BaseModel):
    contact_id: Id128
    email: EmailText | None = None


class DistributionRequest(BaseModel):
    contacts: Annotated[list[Recipient], Field(min_length=1, max_length=1000)]
    channel: Channel = "api"
    source_ref: Annotated[Label | None, Field(description="the sequence, broadcast or nudge")] = (
        None
    )


class Distribution(BaseModel):
    distribution_id: str
    contact_id: str
    code: str
    channel: Channel
    source_ref: str | None
    expires_at: AwareDatetime | None
    distributed_at: AwareDatetime


class NotDistributed(BaseModel):
    """A contact the campaign's code was not given to, and why."""

    contact_id: str
    error: ErrorBody


class DistributionResult(BaseModel):
    distributed: list[Distribution]
    refused: list[NotDistributed]
