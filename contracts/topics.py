"""Every Kafka topic of the engine, declared once: name, partitions, retention, contents.

Created at start-up when missing (services.coupons.bus.topics). The command and event topics
must have the same partition count: the decider of command partition p appends to event
partition p, and rebuilds its state from it.
"""

from dataclasses import dataclass
from typing import Any

from contracts.commands import Command
from contracts.contacts import ContactEvent, MembershipChanged
from contracts.envelope import Envelope
from contracts.events import Event
from contracts.public import CouponIssued
from contracts.replies import Reply

FOREVER = -1
DAY_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int
    retention_ms: int
    description: str
    schema: Any

    def config(self, replication_factor: int) -> dict[str, str]:
        """Topic settings; with acks=all, a write survives the loss of all replicas but one."""
        return {
            "cleanup.policy": "delete",
            "retention.ms": str(self.retention_ms),
            "retention.bytes": "-1",
            "min.insync.replicas": str(max(1, replication_factor - 1)),
        }


@dataclass(frozen=True)
class Topics:
    commands: Topic
    events: Topic
    replies: Topic
    dead_letters: Topic
    issued: Topic
    stripe_events: Topic
    contact_events: Topic
    segment_membership: Topic

    def all(self) -> tuple[Topic, ...]:
        return (
            self.commands,
            self.events,
            self.replies,
            self.dead_letters,
            self.issued,
            self.stripe_events,
            self.contact_events,
            self.segment_membership,
        )


def declare(prefix: str = "", partitions: int = 6) -> Topics:
    """The topic set; `prefix` isolates environments sharing one cluster (and test runs)."""
    return Topics(
        commands=Topic(
            f"{prefix}coupons.commands.v1",
            partitions,
            7 * DAY_MS,
            "Commands to the campaign decider, keyed by campaign id.",
            Envelope[Command],
        ),
        events=Topic(
            f"{prefix}coupons.events.v1",
            partitions,
            FOREVER,
            "The event log, the source of truth: kept forever, never compacted.",
            Envelope[Event],
        ),
        replies=Topic(
            f"{prefix}coupons.replies.v1",
            partitions,
            DAY_MS,
            "The decider's answer to each command, read by the API that sent it.",
            Envelope[Reply],
        ),
        dead_letters=Topic(
            f"{prefix}coupons.dead-letters.v1",
            1,
            30 * DAY_MS,
            "Messages a consumer could not read, with the reason, in headers.",
            bytes,
        ),
        issued=Topic(
            f"{prefix}coupons.issued.v1",
            partitions,
            30 * DAY_MS,
            "Public: a coupon was issued to a contact, for sequence engines to send. "
            "Keyed by contact id.",
            Envelope[CouponIssued],
        ),
        stripe_events=Topic(
            f"{prefix}coupons.stripe-events.v1",
            partitions,
            30 * DAY_MS,
            "Verified Stripe webhook events, as Stripe sent them (the raw JSON body), keyed by "
            "Stripe event id; the Stripe translator consumes them.",
            dict[str, Any],
        ),
        contact_events=Topic(
            f"{prefix}growthos.contact-events.v1",
            partitions,
            FOREVER,
            "Public, inbound: lifecycle events about contacts from other GrowthOS services, "
            "keyed by contact id; kept forever (profiles are rebuilt from it).",
            ContactEvent,
        ),
        segment_membership=Topic(
            f"{prefix}growthos.segment-membership.v1",
            partitions,
            FOREVER,
            "Public: a contact entered or left a segment, keyed by contact id; at least once, "
            "deduplicate by the message id.",
            MembershipChanged,
        ),
    )
