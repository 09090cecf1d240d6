"""A partition's state as chunks of bytes, and back (pure: no I/O).

A snapshot is written as a stream of chunks, each a pickle of at most `CHUNK_ITEMS` items, so
that encoding never holds the event loop for long: the writer awaits the store between chunks
(measured: docs/performance/resilience.md). A state that is a dataclass with large
persistent maps (a campaign's counts per contact) is written as its head (the dataclass with
those maps empty) followed by the maps' items in slices; a ledger (`domain.ledger`) as its
segments, a chunk each, in columns of bytes that read back without an object per redemption;
the memo as its buckets' segments (`domain.memo_bucket`), a chunk each, likewise: a restart
reads bytes, not an object per key (rebuilding objects was most of a restart:
docs/performance/resilience.md). `steps` yields None between the steps that sort a large
ledger or bucket before its first chunk, so that a writer can let its loop run meanwhile.
`State` chunks come first, then `memo` chunks: a campaign view reads only the first kind.

Each chunk carries a SHA-256 of its bytes, checked on reading. `fingerprint` names the shape
of the state's types: a snapshot written by code whose state types differ is not trusted.

Pickle is safe here because the store is written only by this service (never by a client).
"""

import dataclasses
import hashlib
import itertools
import json
import pickle
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from immutables import Map
from pydantic import BaseModel

from services.coupons.domain.idempotency import Buckets
from services.coupons.domain.ledger import Ledger, Segment
from services.coupons.domain.memo_bucket import Bucket, DecidedSegment

FORMAT = 3
"""The chunk layout below; bump it when it changes (3: the memo's and the ledger names' bytes)."""
CHUNK_ITEMS = 1_000
"""Items (states, map entries) per chunk."""

Kind = Literal["state", "memo"]


@dataclass(frozen=True)
class Chunk:
    kind: Kind
    body: bytes

    @property
    def checksum(self) -> bytes:
        return hashlib.sha256(self.body).digest()


class CorruptSnapshot(ValueError):
    """A chunk's bytes do not match its checksum, or do not decode."""


def fingerprint(*types: type) -> str:
    """The snapshot format and the fields of each state type (a pydantic model by its JSON
    schema), hashed: it changes when a field is added, removed, renamed or retyped."""
    shapes: list[Any] = [FORMAT]
    for kind in types:
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            shapes.append([kind.__qualname__, kind.model_json_schema()])
        elif dataclasses.is_dataclass(kind):
            fields = [(f.name, str(f.type)) for f in dataclasses.fields(kind)]
            shapes.append([kind.__qualname__, fields])
        else:
            raise TypeError(f"{kind!r} is neither a dataclass nor a pydantic model")
    canonical = json.dumps(shapes, sort_keys=True, default=str).encode()
    return f"{FORMAT}.{hashlib.sha256(canonical).hexdigest()[:16]}"


def _split(state: Any) -> tuple[Any, list[tuple[str, Map[Any, Any] | Ledger]]]:
    """The state less its large maps and its ledgers, and those by field name."""
    if not dataclasses.is_dataclass(state) or isinstance(state, type):
        return state, []
    large = [
        (f.name, value)
        for f in dataclasses.fields(state)
        if (isinstance(value := getattr(state, f.name), Map) and len(value) > CHUNK_ITEMS)
        or (isinstance(value, Ledger) and value)
    ]
    if not large:
        return state, []
    empty: dict[str, Any] = {
        name: Ledger() if isinstance(v, Ledger) else Map() for name, v in large
    }
    return dataclasses.replace(state, **empty), large


def encode(states: Mapping[str, Any], memo: Buckets) -> Iterator[Chunk]:
    """The chunks of a state and memo (a generator: each chunk is pickled when asked for)."""
    return (chunk for chunk in steps(states, memo) if chunk is not None)


def steps(states: Mapping[str, Any], memo: Buckets) -> Iterator[Chunk | None]:
    """`encode`'s chunks, and None after each step that sorted part of a ledger or bucket
    before it had a chunk to give (module doc)."""
    records: list[Any] = []
    items = 0
    for key, state in states.items():
        head, large = _split(state)
        records.append(("state", key, head))
        items += 1
        for name, values in large:
            if isinstance(values, Ledger):
                if records:
                    yield Chunk("state", pickle.dumps(records, protocol=5))
                    records, items = [], 0
                for segment in values.segments():
                    if segment is None:
                        yield None
                        continue
                    record = [("ledger", key, name, segment.columns())]
                    yield Chunk("state", pickle.dumps(record, protocol=5))
                continue
            entries = iter(values.items())
            while piece := list(itertools.islice(entries, CHUNK_ITEMS)):
                records.append(("map", key, name, piece))
                items += len(piece)
                if items >= CHUNK_ITEMS:
                    yield Chunk("state", pickle.dumps(records, protocol=5))
                    records, items = [], 0
        if items >= CHUNK_ITEMS:
            yield Chunk("state", pickle.dumps(records, protocol=5))
            records, items = [], 0
    if records:
        yield Chunk("state", pickle.dumps(records, protocol=5))
    for number, bucket in memo.items():
        for decided in bucket.segments():
            if decided is None:
                yield None
                continue
            yield Chunk("memo", pickle.dumps((number, decided.columns()), protocol=5))


def _load(body: bytes, checksum: bytes) -> Any:
    if hashlib.sha256(body).digest() != checksum:
        raise CorruptSnapshot("a chunk does not match its checksum")
    try:
        return pickle.loads(body)  # written by this service only (module doc)
    except Exception as error:  # any unpickling failure means a corrupt chunk
        raise CorruptSnapshot(f"a chunk does not decode: {error!r}") from error


class StatesDecoder:
    """The states from `state` chunks, fed in order (body and checksum)."""

    def __init__(self) -> None:
        self._heads: dict[str, Any] = {}
        self._maps: dict[tuple[str, str], Any] = {}
        self._ledgers: dict[tuple[str, str], list[Segment]] = {}

    def feed(self, body: bytes, checksum: bytes) -> None:
        for record in _load(body, checksum):
            if record[0] == "state":
                self._heads[record[1]] = record[2]
            elif record[0] == "ledger":
                _, key, name, columns = record
                try:
                    segment = Segment.of_columns(columns)
                except (TypeError, ValueError) as error:
                    raise CorruptSnapshot(f"a ledger segment does not decode: {error!r}") from error
                self._ledgers.setdefault((key, name), []).append(segment)
            else:
                _, key, name, piece = record
                building = self._maps.setdefault((key, name), Map().mutate())
                for k, v in piece:
                    building[k] = v

    def finish(self) -> dict[str, Any]:
        heads = self._heads
        for (key, name), building in self._maps.items():
            heads[key] = dataclasses.replace(heads[key], **{name: building.finish()})
        for (key, name), segments in self._ledgers.items():
            heads[key] = dataclasses.replace(heads[key], **{name: Ledger(tuple(segments))})
        return heads


class MemoDecoder:
    """The memo's buckets from `memo` chunks, fed in order (body and checksum)."""

    def __init__(self) -> None:
        self._building: dict[int, list[DecidedSegment]] = {}

    def feed(self, body: bytes, checksum: bytes) -> None:
        try:
            number, columns = _load(body, checksum)
            segment = DecidedSegment.of_columns(columns)
        except (TypeError, ValueError) as error:
            raise CorruptSnapshot(f"a memo chunk does not decode: {error!r}") from error
        self._building.setdefault(number, []).append(segment)

    def finish(self) -> dict[int, Bucket]:
        return {number: Bucket(tuple(cold)) for number, cold in self._building.items()}
