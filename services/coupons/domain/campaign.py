"""The campaign aggregate: `decide` what a command means, `evolve` state by an event."""

from dataclasses import dataclass
from datetime import datetime

from contracts.commands import Command, DefineCampaign
from contracts.events import CampaignDefined, CommandRejected, Event
from contracts.money import Discount
from contracts.reasons import Reason


@dataclass(frozen=True)
class Campaign:
    id: str
    name: str
    discount: Discount
    defined_at: datetime


def decide(campaign: Campaign | None, command: Command) -> list[Event]:
    """The events that `command` produces against the current state. Never raises for a
    business refusal: a refusal is a `CommandRejected` event with a stable reason."""
    match command:
        case DefineCampaign():
            if campaign is not None:
                return [
                    _rejected(command, Reason.CAMPAIGN_EXISTS, f"campaign {campaign.id} exists")
                ]
            return [
                CampaignDefined(
                    campaign_id=command.campaign_id, name=command.name, discount=command.discount
                )
            ]


def evolve(campaign: Campaign | None, event: Event, occurred_at: datetime) -> Campaign | None:
    match event:
        case CampaignDefined():
            return Campaign(event.campaign_id, event.name, event.discount, occurred_at)
        case CommandRejected():
            return campaign


def _rejected(command: Command, reason: Reason, detail: str) -> CommandRejected:
    return CommandRejected(
        campaign_id=command.campaign_id, command_type=command.type, reason=reason, detail=detail
    )
