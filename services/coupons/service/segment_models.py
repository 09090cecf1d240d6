"""What an analyst or admin sends to define, change and preview a segment."""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from contracts.bounds import Label

SegmentId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class SegmentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: SegmentId | None = None
    name: Label
    kind: Literal["live", "static"] = "live"
    condition: JsonValue = None
    """Required for a live segment; none for a static one (its list is uploaded)."""


class SegmentChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Label | None = None
    condition: JsonValue | None = None
    status: Literal["active", "archived"] | None = None


class Preview(BaseModel):
    model_config = ConfigDict(extra="forbid")
    condition: JsonValue
