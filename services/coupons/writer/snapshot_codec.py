"""A partition's state as chunks of bytes, and back (pure: no I/O).

A snapshot is written as a stream of chunks, each a pickle of at most `CHUNK_ITEMS` items, so
that encoding never holds the event loop for long: the writer awaits the store between chunks
(measured: docs/performance.md, "Snapshots"). A state that is a dataclass with large
persistent maps (a campaign's ledger, its counts per contact) is written as its head (the
dataclass with those maps empty) followed by the maps' items in slices; the memo as its
buckets' items in slices. `State` chunks come first, then `memo` chunks: a campaign view reads
only the first kind.

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

from services.coupons.domain.idempotency import Buckets, Decided, Slot

FORMAT = 1
"""The chunk layout below; bump it when it changes."""
CHUNK_ITEMS = 1_000
"""Items (states, map entries, memo keys) per chunk."""

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


def _split(state: Any) -> tuple[Any, list[tuple[str, Map[Any, Any]]]]:
    """The state less its large maps, and those maps by field name."""
    if not dataclasses.is_dataclass(state) or isinstance(state, type):
        return state, []
    large = [
        (f.name, value)
        for f in dataclasses.fields(state)
        if isinstance(value := getattr(state, f.name), Map) and len(value) > CHUNK_ITEMS
    ]
    if not large:
        return state, []
    return dataclasses.replace(state, **{name: Map() for name, _ in large}), large


def encode(states: Mapping[str, Any], memo: Buckets) -> Iterator[Chunk]:
    """The chunks of a state and memo (a generator: each chunk is pickled when asked for)."""
    records: list[Any] = []
    items = 0
    for key, state in states.items():
        head, large = _split(state)
        records.append(("state", key, head))
        items += 1
        for name, values in large:
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
        entries = iter(bucket.items())
        while piece := list(itertools.islice(entries, CHUNK_ITEMS)):
            yield Chunk("memo", pickle.dumps((number, piece), protocol=5))


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

    def feed(self, body: bytes, checksum: bytes) -> None:
        for record in _load(body, checksum):
            if record[0] == "state":
                self._heads[record[1]] = record[2]
            else:
                _, key, name, piece = record
                building = self._maps.setdefault((key, name), Map().mutate())
                for k, v in piece:
                    building[k] = v

    def finish(self) -> dict[str, Any]:
        heads = self._heads
        for (key, name), building in self._maps.items():
            heads[key] = dataclasses.replace(heads[key], **{name: building.finish()})
        return heads


class MemoDecoder:
    """The memo's buckets from `memo` chunks, fed in order (body and checksum)."""

    def __init__(self) -> None:
        self._building: dict[int, Any] = {}

    def feed(self, body: bytes, checksum: bytes) -> None:
        number, piece = _load(body, checksum)
        bucket = self._building.setdefault(number, Map().mutate())
        for slot, decided in piece:
            bucket[slot] = decided

    def finish(self) -> dict[int, Map[Slot, Decided]]:
        return {number: bucket.finish() for number, bucket in self._building.items()}
