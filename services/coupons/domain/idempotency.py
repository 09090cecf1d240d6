"""The idempotency memo: what each (campaign, idempotency key) was answered, for a window.

A command whose key was decided within the window gets that first outcome back, whatever the
state is now; the same key with a different request is a client error. Past the window
(`RETENTION_S`, 24 h by default, as Stripe keeps its keys) the key is forgotten and a command
carrying it is a new request, decided against the state as it is then: a redemption's id is
derived from its key, so a redemption retried a day later is refused as `redemption_exists`
by the campaign's own ledger (kept for ever), never counted twice.

The memo is a fold over the event log (every event carries its command's key and request
hash), so it survives restarts exactly like the aggregate state. Decisions are kept in
buckets of a 24th of the window by the time they were decided; a whole bucket is dropped once
it is older than the window, so a key is remembered for at least the window and at most a
24th longer, and memory is bounded by the keys of one window. Each bucket (`memo_bucket`) is
immutable, its decisions since the start a persistent map and those read from a snapshot flat
columns: a snapshot takes the memo as it stands without copying it, and a restart reads it
back without an object per key.

An entry is compact (measured: docs/performance/resilience.md): the slot is a
16-byte digest of (campaign, key), the request hash 16 bytes, the event positions flat ints.
"""

import bisect
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from contracts.envelope import Envelope
from contracts.events import CommandRejected
from contracts.reasons import Reason
from contracts.replies import EventPosition
from services.coupons.domain.memo_bucket import Bucket, Decided, prefix

RETENTION_S = 24 * 3600.0
"""How long a decided key is remembered by default (`COUPONS_IDEMPOTENCY_WINDOW_S`)."""
BUCKETS_PER_WINDOW = 24

Slot = bytes
Buckets = Mapping[int, Bucket]


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


def _short(digest: str) -> bytes:
    """The first 16 bytes of a request hash: enough to tell two requests apart."""
    return bytes.fromhex(digest[:32])


def slot_of(envelope: Envelope[Any]) -> Slot | None:
    """Where the memo keeps the decision of this command (or of the command of this event)."""
    if envelope.idempotency_key is None:
        return None
    pair = f"{envelope.key}\x00{envelope.idempotency_key}".encode()
    return hashlib.blake2b(pair, digest_size=16).digest()


class Memo:
    def __init__(self, refusal: Refusal = campaign_refusal, window_s: float = RETENTION_S) -> None:
        self._refusal = refusal
        self.window_s = window_s
        self._bucket_s = window_s / BUCKETS_PER_WINDOW
        self._buckets: dict[int, Bucket] = {}
        self._order: list[int] = []  # bucket numbers, oldest first
        self._restored: list[int] = []  # those of them with decisions read from a snapshot

    def __len__(self) -> int:
        return sum(len(b) for b in self._buckets.values())

    def _find(self, slot: Slot) -> tuple[int, Decided] | tuple[None, None]:
        """The newest bucket's decision of `slot`. The hot maps first (a map lookup each), then
        the restored columns of the buckets newer than a hot find (a bisection each), so a new
        key (the common case) costs one bisection per restored bucket, not more."""
        buckets = self._buckets
        hot: tuple[int, Decided] | tuple[None, None] = None, None
        for number in reversed(self._order):
            found = buckets[number].hot_get(slot)
            if found is not None:
                hot = number, found
                break
        if self._restored:
            key = prefix(slot)
            for number in reversed(self._restored):
                if hot[0] is not None and number <= hot[0]:
                    break  # a hot decision shadows the restored one of its bucket and older
                found = buckets[number].cold_get(slot, key)
                if found is not None:
                    return number, found
        return hot

    def _put(self, number: int, slot: Slot, decided: Decided) -> None:
        bucket = self._buckets.get(number)
        if bucket is None:
            bucket = Bucket()
            bisect.insort(self._order, number)
        self._buckets[number] = bucket.set(slot, decided)

    def _number(self, at: datetime) -> int:
        return int(at.timestamp() // self._bucket_s)

    def get(self, command: Envelope[Any]) -> Decided | None:
        slot = slot_of(command)
        return None if slot is None else self._find(slot)[1]

    def recall(self, command: Envelope[Any], digest: str) -> Decided | None:
        """The first outcome for this command's key; raises `KeyReused` on a different body.
        `digest` is the command's `request_hash`, computed once by the caller."""
        prior = self.get(command)
        if prior is not None and prior.request_hash != _short(digest):
            raise KeyReused(command.idempotency_key)
        return prior

    def begin(self, command: Envelope[Any], digest: str, events: list[Any], at: datetime) -> None:
        """Remember a decision made at `at` as soon as it is made, so a retry in the same batch
        sees it; `place` adds each event's position once the log has acknowledged it."""
        slot = slot_of(command)
        if slot is not None:
            refused = next((r for r in map(self._refusal, events) if r), None)
            self._put(self._number(at), slot, Decided(_short(digest), refused))

    def place(self, event: Envelope[Any], position: EventPosition) -> None:
        slot = slot_of(event)
        if slot is None:
            return
        number, earlier = self._find(slot)
        if number is not None and earlier is not None:
            self._put(number, slot, earlier.at(position))

    def replay(self, event: Envelope[Any], position: EventPosition) -> None:
        """Fold one event read back from the log."""
        slot, digest = slot_of(event), event.request_hash
        if slot is None or digest is None:
            return
        number, earlier = self._find(slot)
        if number is not None and earlier is not None and earlier.request_hash == _short(digest):
            self._put(number, slot, earlier.at(position))
        else:
            decided = Decided(_short(digest), self._refusal(event.data))
            self._put(self._number(event.occurred_at), slot, decided.at(position))

    def expire(self, now: datetime) -> int:
        """Forget the buckets decided before the window; returns how many keys went."""
        oldest = self._number(now) - BUCKETS_PER_WINDOW
        forgotten = 0
        while self._order and self._order[0] < oldest:
            forgotten += len(self._buckets.pop(self._order.pop(0)))
        self._restored = [number for number in self._restored if number >= oldest]
        return forgotten

    def buckets(self, without: Iterable[Slot] = ()) -> dict[int, Bucket]:
        """The memo as it stands (immutable buckets, not copied), less the decisions of the
        slots `without` made since the start (those of a snapshot are committed)."""
        taken = dict(self._buckets)
        for slot in without:
            number, _ = self._find(slot)
            if number is not None:
                taken[number] = taken[number].delete(slot)
        return taken

    def compaction(self) -> Iterator[None]:
        """Turn the buckets whose hot maps have grown (`Bucket.compactable`) into segments, as
        a restart reads them back, a step at a time (None after each: the caller lets others
        run and changes nothing in the memo until the last). For a long fold (`long_folds`)."""
        newest = self._order[-1] if self._order else None
        for number in list(self._order):
            if not self._buckets[number].compactable(settled=number != newest):
                continue
            for step in self._buckets[number].compacting():
                if step is None:
                    yield None
                else:
                    self._buckets[number] = step
            if number not in self._restored:
                bisect.insort(self._restored, number)

    def restore(self, buckets: Buckets) -> None:
        """Start from buckets a snapshot kept."""
        self._buckets = dict(buckets)
        self._order = sorted(self._buckets)
        self._restored = [number for number in self._order if self._buckets[number].has_cold]
