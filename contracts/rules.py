"""A campaign's rules: when it runs, how often it may be used, who may use it, how long the
discount lasts and what its generated codes look like. Defaults are the safe choice."""

from typing import Annotated, Literal

from pydantic import Field, Strict, StringConstraints, field_validator, model_validator

from contracts.base import Frozen
from contracts.bounds import Amount, Count, Flag, PositiveAmount, Timestamp
from contracts.checkout import ProductRef

MAX_RESERVATION_TTL_S = 86_400
MAX_PRODUCTS = 1000
MAX_EMAIL_DOMAINS = 100
MAX_SEGMENTS = 100
SegmentRef = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
]
MAX_MONTHS = 1200
EmailDomain = Annotated[
    str, StringConstraints(max_length=253, pattern=r"^(?:[a-z0-9-]+\.)+[a-z0-9-]+$")
]


class Validity(Frozen):
    """The redemption window: from `starts_at` (inclusive) to `expires_at` (exclusive)."""

    starts_at: Timestamp | None = None
    expires_at: Timestamp | None = None

    @model_validator(mode="after")
    def _expires_after_start(self) -> "Validity":
        if self.starts_at and self.expires_at and self.expires_at <= self.starts_at:
            raise ValueError("expires_at must be after starts_at")
        return self


MAX_TOP_UP = 1_000_000


class Limits(Frozen):
    """Caps on use. None means unlimited. `budget` is the total discount the campaign may give,
    in minor units of the campaign's currency."""

    max_redemptions: Count | None = None
    per_contact: Count | None = 1
    per_code: Count | None = None
    budget: PositiveAmount | None = None
    reservation_ttl_s: Annotated[int, Strict(), Field(ge=1, le=MAX_RESERVATION_TTL_S)] = 900
    """How long a reservation (`POST /v1/reservations`) holds one use, in seconds."""
    codes_low_at: Count | None = None
    """When the unique codes not yet given out fall to this many, the decider records
    `CodesLow` (once each time the stock crosses it)."""
    codes_top_up: Annotated[int | None, Strict(), Field(ge=1, le=MAX_TOP_UP)] = None
    """With `codes_low_at`: then generate this many more unique codes, with the pattern of
    the campaign's last code batch."""


class Eligibility(Frozen):
    """Who and what a code applies to.

    `products` lists product ids or plan ids; empty means every item. `min_amount` is compared
    with the cart total before discount. `bound_to_contact`: a unique code distributed to a
    contact may only be redeemed by that contact."""

    min_amount: Amount | None = None
    products: Annotated[tuple[ProductRef, ...], Field(max_length=MAX_PRODUCTS)] = ()
    first_purchase_only: Flag = False
    email_domains: Annotated[tuple[EmailDomain, ...], Field(max_length=MAX_EMAIL_DOMAINS)] = ()
    bound_to_contact: Flag = True
    stackable: Flag = False
    segments: Annotated[tuple[SegmentRef, ...], Field(max_length=MAX_SEGMENTS)] = ()
    """The contact must belong to at least one (empty: no restriction)."""
    excluded_segments: Annotated[tuple[SegmentRef, ...], Field(max_length=MAX_SEGMENTS)] = ()
    """The contact must belong to none."""

    @field_validator("email_domains", mode="before")
    @classmethod
    def _normalise_domains(cls, domains: object) -> object:
        """Lower-case, and accept " @Example.com" as "example.com" (a common way to write it)."""
        if isinstance(domains, list | tuple):
            return tuple(
                d.strip().lstrip("@").lower() if isinstance(d, str) else d for d in domains
            )
        return domains


class Duration(Frozen):
    """How long a subscription discount lasts: one invoice, `months` months, or forever."""

    kind: Literal["once", "repeating", "forever"] = "once"
    months: Annotated[int, Strict(), Field(ge=1, le=MAX_MONTHS)] | None = None

    @model_validator(mode="after")
    def _months_iff_repeating(self) -> "Duration":
        if (self.kind == "repeating") != (self.months is not None):
            raise ValueError("months is required for a repeating duration, and only then")
        return self


class CodePattern(Frozen):
    """The shape of generated codes: `prefix` then `length` random characters from `alphabet`,
    with a '-' every `group` random characters (0: no separators).

    The default alphabet (32 characters, 5 bits each) drops 0/O/1/I, which people misread.
    The alphabet's contents are judged by `services.coupons.domain.codes.check_pattern`,
    which gives a stable reason."""

    prefix: Annotated[str, StringConstraints(max_length=16, pattern=r"^[A-Z0-9-]*$")] = ""
    length: Annotated[int, Strict(), Field(ge=4, le=64)] = 12
    alphabet: Annotated[
        str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")
    ] = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
    group: Annotated[int, Strict(), Field(ge=0, le=64)] = 4
