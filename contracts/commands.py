"""Commands: requests to the campaign decider, named in the imperative.

A command may be refused; the decider answers every one on the replies topic. All commands of
one campaign are keyed by its id, so one writer decides them in order.
"""

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from contracts.base import CampaignId, Currency, Frozen
from contracts.bounds import (
    Amount,
    EmailText,
    Id64,
    Id128,
    Id200,
    Index,
    Label,
    Note,
    PositiveAmount,
    Why,
)
from contracts.checkout import Cart, Customer
from contracts.money import Discount
from contracts.rules import MAX_SEGMENTS, Duration, Eligibility, Limits, SegmentRef, Validity

CampaignName = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$"
    ),
]
Code = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9]{3,64}$")]
"""A normalised code (domain.codes.normalise): upper case, no separators."""
RedemptionId = Id64
OrderRef = Id200
Status = Literal["draft", "active", "paused", "ended"]
MAX_CODES = 5
MAX_EXPIRY_DAYS = 36_500
"""The most codes one cart may carry."""


class CampaignTerms(Frozen):
    """What a campaign offers and on which rules: shared by the command and its event."""

    campaign_id: CampaignId
    name: CampaignName
    discount: Discount
    code: Code | None = None
    """Its shared (vanity) code."""
    status: Literal["draft", "active"] = "active"
    duration: Duration = Duration()
    validity: Validity = Validity()
    limits: Limits = Limits()
    eligibility: Eligibility = Eligibility()

    @model_validator(mode="after")
    def _money_rules_need_a_currency(self) -> "CampaignTerms":
        if (self.limits.budget or self.eligibility.min_amount) and self.discount.currency is None:
            raise ValueError("a budget or a minimum amount needs the discount's currency")
        return self


class DefineCampaign(CampaignTerms):
    """Create a campaign with its discount and rules."""

    type: Literal["coupon.define_campaign.v1"] = "coupon.define_campaign.v1"
    default_expiry_days: Annotated[int, Field(ge=1, le=MAX_EXPIRY_DAYS)] = 30
    """Every coupon expires: without `validity.expires_at`, the decider sets it this many days
    after `starts_at` (or the decision)."""


class ChangeCampaignStatus(Frozen):
    """draft -> active; active <-> paused; anything but ended -> ended (final)."""

    type: Literal["coupon.change_campaign_status.v1"] = "coupon.change_campaign_status.v1"
    campaign_id: CampaignId
    status: Literal["active", "paused", "ended"]
    reason: Note = ""


class TermsChange(Frozen):
    """The parts of a campaign's terms that may change (None: unchanged): shared by the
    command and its event."""

    campaign_id: CampaignId
    name: CampaignName | None = None
    validity: Validity | None = None
    limits: Limits | None = None
    eligibility: Eligibility | None = None


class UpdateCampaign(TermsChange):
    """Change a campaign's name, window, limits or eligibility; a part not given stays as it
    is, and a part given replaces that part whole. The discount, its duration and the codes
    never change: customers were promised them. `reason` is the why of the audit trail."""

    type: Literal["coupon.update_campaign.v1"] = "coupon.update_campaign.v1"
    reason: Why


class RedeemCode(Frozen):
    """Redeem `code` for this customer and cart. The discount is computed by the decider."""

    type: Literal["coupon.redeem_code.v1"] = "coupon.redeem_code.v1"
    campaign_id: CampaignId
    redemption_id: RedemptionId
    code: Code
    customer: Customer
    cart: Cart
    order_ref: OrderRef
    other_codes_stackable: Annotated[tuple[bool, ...], Field(max_length=MAX_CODES - 1)] = ()
    """Stacking: the `stackable` flag of each other code in the cart."""
    already_off: Amount = 0
    """Stacking: what the codes before this one take off the cart."""
    reservation_id: Id64 | None = None
    """Redeem what this reservation holds: no rule is checked again but its expiry."""
    segments: Annotated[tuple[SegmentRef, ...], Field(max_length=2 * MAX_SEGMENTS)] = ()
    """The campaign's segments and excluded segments the contact belongs to, as the API read
    them from PostgreSQL when it sent the command (never the client's word)."""

    @model_validator(mode="after")
    def _already_off_within_the_cart(self) -> "RedeemCode":
        if self.already_off > self.cart.amount:
            raise ValueError("already_off exceeds the cart amount")
        return self


class ReserveCode(Frozen):
    """Hold one use of `code` for this customer and cart until the campaign's
    `reservation_ttl_s` (or `ttl_s`) passes: it counts against every limit as a redemption
    does, and is released by `ReleaseReservation`, its expiry, or turned into a redemption."""

    type: Literal["coupon.reserve_code.v1"] = "coupon.reserve_code.v1"
    campaign_id: CampaignId
    reservation_id: Id64
    code: Code
    customer: Customer
    cart: Cart
    ttl_s: Annotated[int, Field(ge=1, le=86_400)] | None = None
    segments: Annotated[tuple[SegmentRef, ...], Field(max_length=2 * MAX_SEGMENTS)] = ()
    """As `RedeemCode.segments`: the campaign's segments the contact is in, read by the API."""


class ReleaseReservation(Frozen):
    """Give a reservation's hold back: the shopper left, or (`expired`) its time is up, sent by
    the campaign's writer itself from its durable timers."""

    type: Literal["coupon.release_reservation.v1"] = "coupon.release_reservation.v1"
    campaign_id: CampaignId
    reservation_id: Id64
    expired: bool = False


class ReverseRedemption(Frozen):
    """A refund or cancellation: release the redemption, its limits and its budget."""

    type: Literal["coupon.reverse_redemption.v1"] = "coupon.reverse_redemption.v1"
    campaign_id: CampaignId
    redemption_id: RedemptionId
    reason: Note = ""


class RecordRedemption(Frozen):
    """Record a redemption that already happened elsewhere (a paid Stripe invoice or checkout
    session): the discount was granted, so it is a fact, accepted even past the campaign's
    limits. Amounts in minor units: `amount` before the discount, `total` paid."""

    type: Literal["coupon.record_redemption.v1"] = "coupon.record_redemption.v1"
    campaign_id: CampaignId
    redemption_id: RedemptionId
    code: Code
    contact_id: Id128
    order_ref: OrderRef
    currency: Currency
    amount: Amount
    discount: Amount
    total: Amount
    source: Literal["stripe"] = "stripe"


class RefundRedemption(Frozen):
    """Part of a redemption's revenue was refunded; once per `refund_id`."""

    type: Literal["coupon.refund_redemption.v1"] = "coupon.refund_redemption.v1"
    campaign_id: CampaignId
    redemption_id: RedemptionId
    refund_id: Id200
    currency: Currency
    refunded: PositiveAmount
    reason: Note = ""


MAX_CHUNK_CODES = 50_000
"""The most codes one `AddCodes` carries: 50,000 default codes make a 750 kB message."""


class AddCodes(Frozen):
    """Add generated unique codes to the campaign (one chunk of a code batch). The codes are
    already claimed for this campaign in the code registry, so no other campaign has them."""

    type: Literal["coupon.add_codes.v1"] = "coupon.add_codes.v1"
    campaign_id: CampaignId
    batch_id: Id64
    chunk: Index
    codes: Annotated[tuple[Code, ...], Field(min_length=1, max_length=MAX_CHUNK_CODES)]


Channel = Literal["email", "sequence", "broadcast", "nudge", "partner", "api"]


class DistributeCode(Frozen):
    """Give the campaign's code to a contact, through a channel; sequence engines are told on
    the public `coupons.issued.v1` topic."""

    type: Literal["coupon.distribute_code.v1"] = "coupon.distribute_code.v1"
    campaign_id: CampaignId
    distribution_id: Id64
    contact_id: Id128
    email: EmailText | None = None
    channel: Channel = "api"
    source_ref: Label | None = None
    """The sequence, broadcast, nudge or partner that sends it."""


Command = Annotated[
    DefineCampaign
    | ChangeCampaignStatus
    | UpdateCampaign
    | RedeemCode
    | ReverseRedemption
    | DistributeCode
    | AddCodes
    | RecordRedemption
    | RefundRedemption
    | ReserveCode
    | ReleaseReservation,
    Field(discriminator="type"),
]
