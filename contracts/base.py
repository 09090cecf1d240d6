"""Shared building blocks for message models."""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

from contracts import bounds


class Frozen(BaseModel):
    """An immutable message part that rejects unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


CampaignId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
]
Currency = bounds.Currency
"""ISO 4217 code of money, upper case. One currency per coupon."""
