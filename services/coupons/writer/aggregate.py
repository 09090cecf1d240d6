"""What a keyed aggregate gives the single-writer engine: how to read its commands and events,
its pure `decide` and `evolve`, how it refuses, and what of its events it announces on public
topics. Everything else (partitions, fencing, transactions, the idempotency memo, dead
letters, handover, replies) is the engine's. Adding an aggregate: docs/architecture.md."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from contracts.codec import Codec
from contracts.envelope import Envelope
from contracts.reasons import Reason
from services.coupons.writer.timers import Timer


@dataclass(frozen=True)
class Announcement:
    """A public message sent in the same transaction as the event it announces."""

    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


class Aggregate(Protocol):
    name: str
    """Names its writers: their consumer group, transactional ids and log lines."""
    commands: Codec[Envelope[Any]]
    events: Codec[Envelope[Any]]

    def decide(self, state: Any | None, command: Any, now: datetime) -> list[Any]:
        """The events `command` produces against `state` (pure; a refusal is an event)."""

    def evolve(self, state: Any | None, event: Any, occurred_at: datetime) -> Any | None:
        """`state` after `event` (pure)."""

    def unprocessable(self, command: Any, detail: str) -> Any:
        """The refusal event of a command `decide` or `evolve` failed on."""

    def refusal(self, event: Any) -> tuple[Reason, str] | None:
        """The reason and detail when `event` records a refusal; else None."""

    def announce(self, state: Any, envelope: Envelope[Any]) -> list[Announcement]:
        """What public topics are told of an appended event (`state` is after it)."""

    def timers(self, key: str, state: Any) -> list[Timer]:
        """The commands to decide at given instants for this instance (durable timers:
        `writer.timers`), as `state` stands now."""

    def answered(self, events: list[Any]) -> dict[str, Any]:
        """Fields of the reply to a first acceptance beyond the outcome (the redemption it
        recorded, say), so a caller need not wait for a read model."""
