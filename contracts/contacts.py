"""Contact lifecycle events (inbound, `growthos.contact-events.v1`) and segment membership
events (ours, published on `growthos.segment-membership.v1`). See docs/segments.md."""

from typing import Annotated, Literal

from pydantic import Field, Strict, StringConstraints

from contracts.base import Frozen
from contracts.bounds import EmailText, Id128, Label, Timestamp

MAX_TRAITS = 100
MAX_PROPS = 50
MAX_BATCH = 1000

EventType = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")
]
"""A dotted name chosen by the sender: `trial.will_end`, `page.viewed`."""
FieldName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
]
Number = Annotated[float, Field(ge=-1e15, le=1e15, allow_inf_nan=False)]
Scalar = Annotated[bool, Strict()] | Annotated[int, Strict(), Field(ge=-(10**15), le=10**15)]
Value = Scalar | Number | Label | None
"""A trait or property value: boolean, number, text (ISO-8601 text with a zone is a
timestamp), or null (unsets a trait)."""


class ContactEvent(Frozen):
    """Something another GrowthOS service knows about a contact."""

    id: Id128
    type: EventType
    contact_id: Id128
    email: EmailText | None = None
    occurred_at: Timestamp
    traits: Annotated[dict[FieldName, Value], Field(default_factory=dict, max_length=MAX_TRAITS)]
    properties: Annotated[dict[FieldName, Value], Field(default_factory=dict, max_length=MAX_PROPS)]


class ContactEventBatch(Frozen):
    events: Annotated[tuple[ContactEvent, ...], Field(min_length=1, max_length=MAX_BATCH)]


class MembershipChanged(Frozen):
    """A contact entered or left a segment. `id` is stable (segment, version, contact and
    cause), so a consumer dedupes redeliveries by it. `cause` is the event id or
    `timer:<epoch second>` or `backfill:<version>` that made the change."""

    id: Id128
    type: Literal["contact.entered_segment.v1", "contact.left_segment.v1"]
    contact_id: Id128
    segment_id: Id128
    segment_version: Annotated[int, Strict(), Field(ge=1)]
    cause: Id128
    at: Timestamp
