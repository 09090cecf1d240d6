"""The idempotency memo: what each (campaign, idempotency key) was answered.

A command whose key was decided before gets that first outcome back, whatever the state is
now; the same key with a different request is a client error. The memo is a fold over the
event log (every event carries its command's key and request hash), so it survives restarts
exactly like the aggregate state. It is mutable on purpose: it grows with every command, and
copying it per event would make a rebuild quadratic.
"""

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic import BaseModel

from contracts.envelope import Envelope
from contracts.events import CommandRejected
from contracts.reasons import Reason
from contracts.replies import EventPosition

Slot = tuple[str, str]


@dataclass(frozen=True)
class Decided:
    request_hash: str
    outcome: Literal["accepted", "rejected"]
    reason: Reason | None = None
    detail: str | None = None
    events: tuple[EventPosition, ...] = ()


class KeyReused(Exception):
    """The idempotency key was decided before for a different request."""


Refusal = Callable[[Any], tuple[Reason, str] | None]
"""Whether an event records a refusal: its reason and detail (the aggregate's `refusal`)."""


def campaign_refusal(event: Any) -> tuple[Reason, str] | None:
    if isinstance(event, CommandRejected):
        return event.reason, event.detail
    return None


def request_hash(command: BaseModel) -> str:
    canonical = json.dumps(command.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _slot(envelope: Envelope[Any]) -> Slot | None:
    if envelope.idempotency_key is None:
        return None
    return (envelope.key, envelope.idempotency_key)


def _decided(
    digest: str, refused: tuple[Reason, str] | None, events: tuple[EventPosition, ...]
) -> Decided:
    if refused is not None:
        return Decided(digest, "rejected", refused[0], refused[1], events)
    return Decided(digest, "accepted", events=events)


class Memo:
    def __init__(self, refusal: Refusal = campaign_refusal) -> None:
        self._decided: dict[Slot, Decided] = {}
        self._refusal = refusal

    def get(self, command: Envelope[Any]) -> Decided | None:
        slot = _slot(command)
        return None if slot is None else self._decided.get(slot)

    def recall(self, command: Envelope[Any], digest: str) -> Decided | None:
        """The first outcome for this command's key; raises `KeyReused` on a different body.
        `digest` is the command's `request_hash`, computed once by the caller."""
        prior = self.get(command)
        if prior is not None and prior.request_hash != digest:
            raise KeyReused(command.idempotency_key)
        return prior

    def begin(self, command: Envelope[Any], digest: str, events: list[Any]) -> None:
        """Remember a decision as soon as it is made, so a retry in the same batch sees it;
        `place` adds each event's position once the log has acknowledged it."""
        slot = _slot(command)
        if slot is not None:
            refused = (self._refusal(e) for e in events)
            self._decided[slot] = _decided(digest, next((r for r in refused if r), None), ())

    def place(self, event: Envelope[Any], position: EventPosition) -> None:
        slot = _slot(event)
        if slot is not None and slot in self._decided:
            earlier = self._decided[slot]
            self._decided[slot] = replace(earlier, events=(*earlier.events, position))

    def replay(self, event: Envelope[Any], position: EventPosition) -> None:
        """Fold one event read back from the log."""
        slot, digest = _slot(event), event.request_hash
        if slot is None or digest is None:
            return
        earlier = self._decided.get(slot)
        if earlier is not None and earlier.request_hash == digest:
            self._decided[slot] = replace(earlier, events=(*earlier.events, position))
        else:
            self._decided[slot] = _decided(digest, self._refusal(event.data), (position,))
