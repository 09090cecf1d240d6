"""Discount definitions. Money is always integer minor units in one currency."""

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field, model_validator

from contracts.base import Currency, Frozen
from contracts.bounds import PositiveAmount


class PercentOff(Frozen):
    """A percentage of the amount it applies to, optionally capped at `max_amount_off`."""

    kind: Literal["percent"] = "percent"
    percent_off: Annotated[Decimal, Field(gt=0, le=100, max_digits=5, decimal_places=2)]
    max_amount_off: PositiveAmount | None = None
    currency: Currency | None = None

    @model_validator(mode="after")
    def _cap_has_currency(self) -> "PercentOff":
        if self.max_amount_off is not None and self.currency is None:
            raise ValueError("max_amount_off needs a currency")
        return self


class AmountOff(Frozen):
    """A fixed amount in minor units of `currency`."""

    kind: Literal["amount"] = "amount"
    amount_off: PositiveAmount
    currency: Currency


Discount = Annotated[PercentOff | AmountOff, Field(discriminator="kind")]
