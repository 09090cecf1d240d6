"""Automations (a coupon sent by a lifecycle moment) and broadcasts (a coupon sent to a
segment), as the admin API takes them and as they are stored. See docs/automations.md."""

from typing import Annotated, Literal

from pydantic import Field, JsonValue, Strict, model_validator

from contracts.base import CampaignId, Frozen
from contracts.bounds import Label, Timestamp
from contracts.commands import Channel
from contracts.contacts import EventType, FieldName

DAY = 86_400
SegmentId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
AutomationId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Seconds = Annotated[int, Strict()]
Status = Literal["draft", "active", "paused", "archived"]


class EventTrigger(Frozen):
    """Fires when a contact event of this type is applied (`trial.will_end`)."""

    kind: Literal["event"]
    event_type: EventType


class SegmentTrigger(Frozen):
    """Fires when the contact enters (or leaves) the live or static segment."""

    kind: Literal["entered_segment", "left_segment"]
    segment_id: SegmentId


class MomentTrigger(Frozen):
    """Fires at the trait's timestamp plus `offset_s` (negative: before it), on time, with
    no event arriving. A moment already past when the trait is learnt still fires if it is
    at most `catch_up_s` ago. Each value of the trait is one occurrence."""

    kind: Literal["moment"]
    trait: FieldName
    offset_s: Annotated[Seconds, Field(ge=-3650 * DAY, le=3650 * DAY)]
    catch_up_s: Annotated[Seconds, Field(ge=0, le=30 * DAY)] = 3600


Trigger = Annotated[EventTrigger | SegmentTrigger | MomentTrigger, Field(discriminator="kind")]


class Limits(Frozen):
    """How often one contact may get this automation's coupon: at most `per_contact` sends
    (null: no limit), at least `cooldown_s` apart."""

    per_contact: Annotated[int | None, Strict(), Field(ge=1, le=1000)] = 1
    cooldown_s: Annotated[Seconds | None, Field(ge=0, le=3650 * DAY)] = None


class Conversion(Frozen):
    """What counts as converting, within `window_s` after the trigger: a paid invoice of the
    contact (the Stripe bridge), and/or a contact event of `event_type`."""

    event_type: EventType | None = None
    stripe_invoice: Annotated[bool, Strict()] = True
    window_s: Annotated[Seconds, Field(ge=3600, le=365 * DAY)] = 14 * DAY


class AutomationDefinition(Frozen):
    name: Label
    campaign_id: CampaignId
    trigger: Trigger
    condition: JsonValue = None
    """The segments' condition tree, evaluated on the profile when the run is due."""
    delay_s: Annotated[Seconds, Field(ge=0, le=90 * DAY)] = 0
    channel: Channel = "sequence"
    source_ref: Label | None = None
    limits: Limits = Limits()
    holdout_percent: Annotated[float, Field(ge=0, le=90, allow_inf_nan=False)] = 0
    starts_at: Timestamp | None = None
    ends_at: Timestamp | None = None
    conversion: Conversion = Conversion()

    @model_validator(mode="after")
    def _window(self) -> "AutomationDefinition":
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class AutomationRequest(AutomationDefinition):
    id: AutomationId | None = None
    status: Literal["draft", "active"] = "draft"


class AutomationChange(Frozen):
    """A `PATCH`: the parts given replace the current ones (a new version)."""

    name: Label | None = None
    trigger: Trigger | None = None
    condition: JsonValue = None
    delay_s: Annotated[Seconds | None, Field(ge=0, le=90 * DAY)] = None
    channel: Channel | None = None
    source_ref: Label | None = None
    limits: Limits | None = None
    holdout_percent: Annotated[float | None, Field(ge=0, le=90, allow_inf_nan=False)] = None
    starts_at: Timestamp | None = None
    ends_at: Timestamp | None = None
    conversion: Conversion | None = None


class StatusChange(Frozen):
    status: Status


class BroadcastRequest(Frozen):
    campaign_id: CampaignId
    segment_id: SegmentId
    channel: Channel = "broadcast"
    source_ref: Label | None = None
    send_at: Timestamp | None = None
    """When to send (now when absent); cancellable until then."""
    holdout_percent: Annotated[float, Field(ge=0, le=90, allow_inf_nan=False)] = 0
    conversion: Conversion = Conversion()
