"""The bounds of every value a request, a command or an event may carry.

Every consumer of the event log (the decider, the campaign view, each projection, analysts'
SQL) must be able to hold every value in it, so values are bounded here, at the edge, before
anything is decided or appended: an out-of-range value is a `422` naming its field. The
bounds (docs/errors.md, "Bounds") are product limits well inside what PostgreSQL's `bigint`
(2^63 - 1) and Python's `datetime` hold:

* money: integer minor units, 0 to `MAX_AMOUNT` (10^15: ten trillion euros in cents); a
  JSON integer, never `true`, `1.0` or `"100"`;
* counts (limits, quantities): 1 to `MAX_COUNT` (10^9);
* running totals the decider keeps (a campaign's budget spent, a redemption's refunds): at
  most `MAX_TOTAL` (10^18); a command that would pass it is refused as `out_of_range`;
* timestamps: from `MIN_TIME` (2000-01-01) to before `MAX_TIME` (2200-01-01), with a zone;
* text: no NUL or other control characters (tab and line breaks are allowed in free text),
  no lone surrogates, at most a stated length; identifiers: printable, 1 to a stated length;
* currencies: ISO 4217 codes that carry money (not `XXX`, `XTS`, metals or fund units).
"""

from datetime import UTC, datetime
from typing import Annotated

from iso4217 import Currency as Iso4217
from pydantic import AfterValidator, AwareDatetime, Field, Strict, StringConstraints

MAX_AMOUNT = 10**15
MAX_COUNT = 10**9
MAX_TOTAL = 10**18
MIN_TIME = datetime(2000, 1, 1, tzinfo=UTC)
MAX_TIME = datetime(2200, 1, 1, tzinfo=UTC)
MAX_ITEMS = 1000
"""Line items in one cart."""

Amount = Annotated[int, Strict(), Field(ge=0, le=MAX_AMOUNT)]
"""Money in minor units, possibly zero."""
PositiveAmount = Annotated[int, Strict(), Field(ge=1, le=MAX_AMOUNT)]
Count = Annotated[int, Strict(), Field(ge=1, le=MAX_COUNT)]
Index = Annotated[int, Strict(), Field(ge=0, le=MAX_COUNT)]
Flag = Annotated[bool, Strict()]
"""A JSON boolean, never `"true"` or `1`."""

_CONTROL = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f"
_FREE_TEXT = rf"^[^{_CONTROL}]*$"
_PRINTABLE = r"^[^\x00-\x1f\x7f]+$"


def _text(max_length: int, min_length: int = 0) -> StringConstraints:
    return StringConstraints(min_length=min_length, max_length=max_length, pattern=_FREE_TEXT)


def _id(max_length: int) -> StringConstraints:
    return StringConstraints(min_length=1, max_length=max_length, pattern=_PRINTABLE)


Note = Annotated[str, _text(500)]
"""Free text (a reason, a detail): no NUL or control characters but tab and line breaks."""
Why = Annotated[Note, StringConstraints(strip_whitespace=True, min_length=1)]
"""A reason that must be given: a `Note` with something in it besides white space."""
Label = Annotated[str, _text(200)]
"""A short free text (a source reference)."""
Id64 = Annotated[str, _id(64)]
"""An id a caller chooses (a redemption, a batch): printable characters only."""
Id128 = Annotated[str, _id(128)]
"""A contact id or a product id."""
Id200 = Annotated[str, _id(200)]
"""An order reference or a refund id."""
EmailText = Annotated[str, _text(254)]


def _within_time_bounds(value: datetime) -> datetime:
    try:
        inside = MIN_TIME <= value < MAX_TIME
    except OverflowError:  # an offset that pushes year 1 or 9999 out of range
        inside = False
    if not inside:
        raise ValueError("must be from 2000-01-01 to before 2200-01-01 (UTC)")
    return value


Timestamp = Annotated[AwareDatetime, AfterValidator(_within_time_bounds)]

MONEY_CURRENCIES = frozenset(c.code for c in Iso4217 if c.exponent is not None)
"""ISO 4217 codes of money, from the `iso4217` package (the ISO table as published): the
codes without minor units (XXX no currency, XTS testing, XAU and other metals, XDR and bond
units) carry no money a coupon could take off."""


def _money_currency(code: str) -> str:
    if code not in MONEY_CURRENCIES:
        raise ValueError(f"{code} is not an ISO 4217 currency of money")
    return code


Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$"), AfterValidator(_money_currency)]
"""ISO 4217 code, upper case. One currency per coupon."""
