"""Events: facts the decider appended to the event log, named in the past tense.

The event log is the source of truth; projections and the decider's own state are folds over it.
"""

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from contracts.base import CampaignId, Currency, Frozen
from contracts.bounds import (
    Amount,
    Count,
    EmailText,
    Id64,
    Id128,
    Id200,
    Index,
    Label,
    Note,
    PositiveAmount,
    Timestamp,
)
from contracts.commands import (
    CampaignTerms,
    Channel,
    Code,
    OrderRef,
    RedemptionId,
    Status,
    TermsChange,
)
from contracts.reasons import Reason

Detail = Annotated[str, StringConstraints(max_length=2000)]
"""A refusal's explanation, made by the decider."""


class CampaignDefined(CampaignTerms):
    type: Literal["coupon.campaign_defined.v1"] = "coupon.campaign_defined.v1"


class CampaignStatusChanged(Frozen):
    type: Literal["coupon.campaign_status_changed.v1"] = "coupon.campaign_status_changed.v1"
    campaign_id: CampaignId
    status: Status
    previous: Status
    reason: Note = ""


RedemptionSource = Literal["checkout", "stripe"]
"""Where a redemption was recorded: our checkout API, or a paid Stripe invoice or session."""


class CampaignUpdated(TermsChange):
    """The parts of a campaign's terms that changed, with their new values, and why."""

    type: Literal["coupon.campaign_updated.v1"] = "coupon.campaign_updated.v1"
    reason: Note


class CodeRedeemed(Frozen):
    """A redemption, with its amounts in integer minor units: `amount` before the discount
    (gross revenue), `discount` taken off, `total` paid (net revenue)."""

    type: Literal["coupon.code_redeemed.v1"] = "coupon.code_redeemed.v1"
    campaign_id: CampaignId
    redemption_id: RedemptionId
    code: Code
    contact_id: Id128
    order_ref: OrderRef
    currency: Currency
    amount: Amount
    discount: Amount
    total: Amount
    source: RedemptionSource = "checkout"
    reservation_id: Id64 | None = None
    """The reservation it turned into a redemption, if any."""


class CodeReserved(Frozen):
    """One use of the campaign held for a contact and cart until `expires_at`, counted against
    every limit: the discount is fixed now."""

    type: Literal["coupon.code_reserved.v1"] = "coupon.code_reserved.v1"
    campaign_id: CampaignId
    reservation_id: Id64
    code: Code
    contact_id: Id128
    currency: Currency
    amount: Amount
    discount: Amount
    total: Amount
    expires_at: Timestamp


class ReservationReleased(Frozen):
    """A reservation's hold given back, by the shopper or (`expired`) on time."""

    type: Literal["coupon.reservation_released.v1"] = "coupon.reservation_released.v1"
    campaign_id: CampaignId
    reservation_id: Id64
    expired: bool = False


class RedemptionReversed(Frozen):
    type: Literal["coupon.redemption_reversed.v1"] = "coupon.redemption_reversed.v1"
    campaign_id: CampaignId
    redemption_id: RedemptionId
    contact_id: Id128
    discount: Amount
    reason: Note = ""


class RedemptionRefunded(Frozen):
    """Part of a redemption's revenue was refunded (a partial refund or credit note). The
    redemption stands, with its limits and budget; only net revenue goes down by `refunded`.
    A full refund is a `RedemptionReversed` instead."""

    type: Literal["coupon.redemption_refunded.v1"] = "coupon.redemption_refunded.v1"
    campaign_id: CampaignId
    redemption_id: RedemptionId
    contact_id: Id128
    refund_id: Id200
    currency: Currency
    refunded: PositiveAmount
    reason: Note = ""


class CodeDistributed(Frozen):
    type: Literal["coupon.code_distributed.v1"] = "coupon.code_distributed.v1"
    campaign_id: CampaignId
    distribution_id: Id64
    code: Code
    contact_id: Id128
    email: EmailText | None
    channel: Channel
    source_ref: Label | None
    expires_at: Timestamp | None


class CodesAdded(Frozen):
    """Unique codes now belong to the campaign, undistributed, in this order."""

    type: Literal["coupon.codes_added.v1"] = "coupon.codes_added.v1"
    campaign_id: CampaignId
    batch_id: Id64
    chunk: Index
    codes: tuple[Code, ...]


class CodesLow(Frozen):
    """The campaign's unique codes not yet given out fell to its `limits.codes_low_at`
    (recorded with the distribution that made them fall); `top_up` is how many more codes the
    code-stock keeper generates (none when the campaign does not top up)."""

    type: Literal["coupon.codes_low.v1"] = "coupon.codes_low.v1"
    campaign_id: CampaignId
    remaining: Index
    low_at: Count
    top_up: Count | None


class CommandRejected(Frozen):
    """A decision to refuse a command, kept in the log so refusals are auditable and counted."""

    type: Literal["coupon.command_rejected.v1"] = "coupon.command_rejected.v1"
    campaign_id: CampaignId
    command_type: Annotated[str, StringConstraints(max_length=100)]
    reason: Reason
    detail: Detail


Event = Annotated[
    CampaignDefined
    | CampaignStatusChanged
    | CampaignUpdated
    | CodeRedeemed
    | RedemptionReversed
    | RedemptionRefunded
    | CodeDistributed
    | CodesAdded
    | CodesLow
    | CommandRejected
    | CodeReserved
    | ReservationReleased,
    Field(discriminator="type"),
]
