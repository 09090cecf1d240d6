"""What checkout sends and gets back: validations, redemptions, reservations."""

from typing import Annotated, TypedDict

from pydantic import AwareDatetime, BaseModel, Field

from contracts.bounds import Id64, Label, Note
from contracts.checkout import Cart, Customer
from contracts.commands import MAX_CODES, OrderRef
from contracts.rules import MAX_RESERVATION_TTL_S
from services.coupons.domain.codes import normalise
from services.coupons.service.refusals import ErrorBody, Refused


class ValidationRequest(BaseModel):
    code: Annotated[Label | None, Field(min_length=1, max_length=100)] = None
    codes: Annotated[
        list[Annotated[Label, Field(min_length=1, max_length=100)]] | None,
        Field(min_length=1, max_length=MAX_CODES, description="several codes, applied in order"),
    ] = None
    customer: Customer
    cart: Cart

    def normalised_codes(self) -> list[str]:
        """`code` or `codes` (not both), normalised; the same code twice is refused."""
        if (self.code is None) == (self.codes is None):
            raise Refused("invalid_request", "send either code or codes", field="code")
        found = [normalise(c) for c in (self.codes or [self.code or ""])]
        if len(found) > 1 and len(set(found)) != len(found):
            raise Refused("invalid_request", "a code appears twice", field="codes")
        return found


class RedemptionRequest(ValidationRequest):
    order_ref: OrderRef
    reservation_id: Id64 | None = None
    """Redeem what this reservation (`POST /v1/reservations`) holds, for its code only."""


class CodeResult(BaseModel):
    code: str
    campaign_id: str | None
    valid: bool
    discount: int
    refusal: ErrorBody | None


class ValidationResult(BaseModel):
    """`valid` when every code applies; `discount` and `total` are for the whole cart, and
    `code`, `campaign_id` and `refusal` are the first code's (or the first refusal)."""

    valid: bool
    code: str
    campaign_id: str | None
    amount: int
    discount: int
    total: int
    refusal: ErrorBody | None
    codes: list[CodeResult]


class CodeAnswer(TypedDict):
    """A `CodeResult` as plain data: what `service.checkout.validate` answers, serialised
    without building the model (tests/unit/test_checkout_models.py holds the two alike)."""

    code: str
    campaign_id: str | None
    valid: bool
    discount: int
    refusal: ErrorBody | None


class ValidationAnswer(TypedDict):
    """A `ValidationResult` as plain data (see `CodeAnswer`)."""

    valid: bool
    code: str
    campaign_id: str | None
    amount: int
    discount: int
    total: int
    refusal: ErrorBody | None
    codes: list[CodeAnswer]


class Redemption(BaseModel):
    redemption_id: str
    campaign_id: str
    code: str
    contact_id: str
    order_ref: str
    currency: str
    amount: int
    discount: int
    total: int
    redeemed_at: AwareDatetime
    reversed_at: AwareDatetime | None
    reversal_reason: str | None


class RedemptionResult(Redemption):
    """The first code's redemption; with several codes, the others in `stacked`, in order,
    and the last one's `total` is what the customer pays."""

    stacked: list[Redemption]


class ReversalRequest(BaseModel):
    reason: Note = ""


class ReservationRequest(BaseModel):
    code: Annotated[Label, Field(min_length=1, max_length=100)]
    customer: Customer
    cart: Cart
    ttl_s: Annotated[int, Field(ge=1, le=MAX_RESERVATION_TTL_S)] | None = None
    """How long it holds (default: the campaign's `limits.reservation_ttl_s`, 15 minutes)."""


class Reservation(BaseModel):
    reservation_id: str
    campaign_id: str
    code: str
    contact_id: str
    currency: str
    amount: int
    discount: int
    total: int
    expires_at: AwareDatetime
