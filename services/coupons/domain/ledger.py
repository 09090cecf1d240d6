"""A campaign's ledger: every redemption by its id, kept for reversals and refunds, for ever.

It is the one part of a campaign's state that grows with its history, so it is kept in two
tiers. What the process decided or folded since it started is a persistent map (`hot`,
`immutables.Map`): `set` copies nothing. What it read from a snapshot is `cold`: segments of
flat arrays, sorted by a 64-bit hash of the redemption id, that a snapshot writes and reads
back as bytes, without building an object per redemption. So reading a snapshot costs a copy
of the ledger's bytes (about 40 bytes a redemption), not the ~9 µs per redemption that
unpickling one object each took (docs/performance/resilience.md).

A lookup tries the hot map, then the cold segment whose hash range holds the id (two
bisections in C, the id's bytes compared to rule out a hash collision). A redemption that
changes (reversed, refunded) goes into the hot map, which shadows the cold copy. A snapshot
(`segments`) merges both tiers into fresh segments, lazily, a segment at a time; a long fold
does the same in memory (`compacting`) whenever its hot map has grown (`tiers.due`).
"""

import bisect
import heapq
import itertools
import zlib
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from immutables import Map

from services.coupons.domain import tiers


@dataclass(frozen=True, slots=True)
class Redemption:
    """One redemption in a campaign's ledger. Slotted, and its contact and code strings
    interned by `evolve`, shared with the per-contact and per-code counts."""

    contact_id: str
    code: str
    discount: int
    reversed: bool = False
    refunds: frozenset[str] = frozenset()
    refunded: int = 0


SEGMENT_ENTRIES = 20_000
"""Redemptions per cold segment (a snapshot chunk holds one: about 800 kB)."""


def id_hash(redemption_id: str) -> int:
    """A 64-bit hash of the id, the same in every process (Python's `hash` is salted per
    process): CRC-32 above Adler-32, a fifth of blake2b's cost. Not a secret: a collision
    only costs a comparison of the ids' bytes."""
    encoded = redemption_id.encode()
    return zlib.crc32(encoded) << 32 | zlib.adler32(encoded)


@dataclass(frozen=True, slots=True)
class Segment:
    """Redemptions sorted by `id_hash`, column by column. Contacts and codes are indexes into
    `names`, the distinct names' UTF-8 one after another (ending at `name_ends`), decoded when
    a redemption is looked up: reading a segment builds no string per contact. A redemption
    reversed or refunded keeps those fields in `changed` by index."""

    hashes: array  # type: ignore[type-arg]  # "Q"
    ids: bytes  # the ids' UTF-8, one after another
    ends: array  # type: ignore[type-arg]  # "Q": where each id ends in `ids`
    contacts: array  # type: ignore[type-arg]  # "I"
    codes: array  # type: ignore[type-arg]  # "I"
    discounts: array  # type: ignore[type-arg]  # "q"
    names: bytes
    name_ends: array  # type: ignore[type-arg]  # "I": where each name ends in `names`
    changed: dict[int, tuple[bool, frozenset[str], int]] = field(default_factory=dict)

    def find(self, hashed: int, encoded: bytes) -> Redemption | None:
        hashes = self.hashes
        i = bisect.bisect_left(hashes, hashed)
        while i < len(hashes) and hashes[i] == hashed:
            if self.ids[self.ends[i - 1] if i else 0 : self.ends[i]] == encoded:
                return self.entry(i)
            i += 1
        return None

    def name(self, n: int) -> str:
        ends = self.name_ends
        return self.names[ends[n - 1] if n else 0 : ends[n]].decode()

    def entry(self, i: int) -> Redemption:
        more = self.changed.get(i, ())
        contact, code = self.name(self.contacts[i]), self.name(self.codes[i])
        return Redemption(contact, code, self.discounts[i], *more)

    def items(self) -> Iterator[tuple[int, str, Redemption]]:
        start = 0
        for i, end in enumerate(self.ends):
            yield self.hashes[i], self.ids[start:end].decode(), self.entry(i)
            start = end

    def columns(self) -> tuple[Any, ...]:
        """Its fields as bytes and plain values, for a snapshot chunk."""
        arrays = (self.hashes, self.ends, self.contacts, self.codes, self.discounts)
        names = (self.names, self.name_ends.tobytes())
        return (*(a.tobytes() for a in arrays), self.ids, names, self.changed)

    @classmethod
    def of_columns(cls, columns: tuple[Any, ...]) -> "Segment":
        hashes, ends, contacts, codes, discounts, ids, (names, name_ends), changed = columns
        segment = cls(
            _array("Q", hashes),
            ids,
            _array("Q", ends),
            _array("I", contacts),
            _array("I", codes),
            _array("q", discounts),
            names,
            _array("I", name_ends),
            changed,
        )
        segment.check()
        return segment

    def check(self) -> None:
        """Raises ValueError unless the columns agree in length (a chunk that unpickles but
        was not written by this code). O(1): the checksum already vouches for the bytes."""
        count = len(self.hashes)
        lengths = {len(self.ends), len(self.contacts), len(self.codes), len(self.discounts)}
        if lengths != {count} or not isinstance(self.ids, bytes) or not count:
            raise ValueError("a segment's columns differ in length")
        if self.ends[-1] != len(self.ids) or self.name_ends[-1] != len(self.names):
            raise ValueError("a segment's ends do not match its bytes")

    @classmethod
    def build(cls, entries: list[tuple[int, str, Redemption]]) -> "Segment":
        """A segment of entries already sorted by hash."""
        names: dict[str, int] = {}
        index = names.setdefault
        encoded = [redemption_id.encode() for _, redemption_id, _ in entries]
        redemptions = [r for _, _, r in entries]
        changed = {
            i: (r.reversed, r.refunds, r.refunded)
            for i, r in enumerate(redemptions)
            if r.reversed or r.refunds or r.refunded
        }
        return cls(
            array("Q", [hashed for hashed, _, _ in entries]),
            b"".join(encoded),
            array("Q", itertools.accumulate(map(len, encoded))),
            array("I", [index(r.contact_id, len(names)) for r in redemptions]),
            array("I", [index(r.code, len(names)) for r in redemptions]),
            array("q", [r.discount for r in redemptions]),
            b"".join(named := [name.encode() for name in names]),
            array("I", itertools.accumulate(map(len, named))),
            changed,
        )


def _array(typecode: str, data: bytes) -> array:  # type: ignore[type-arg]
    built = array(typecode)
    built.frombytes(data)
    return built


class Ledger:
    """A persistent map from redemption id to `Redemption` (module doc)."""

    __slots__ = ("_cold", "_cold_count", "_firsts", "_hot")

    def __init__(self, cold: tuple[Segment, ...] = (), hot: Map[str, Redemption] | None = None):
        self._cold = cold
        self._firsts = [segment.hashes[0] for segment in cold]
        self._cold_count = sum(len(segment.hashes) for segment in cold)
        self._hot: Map[str, Redemption] = Map() if hot is None else hot

    def __reduce__(self) -> tuple[Any, ...]:
        return Ledger, (self._cold, self._hot)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ledger):
            return NotImplemented
        return dict(self.items()) == dict(other.items())

    def __hash__(self) -> int:
        raise TypeError("a ledger is not hashable")

    def __repr__(self) -> str:
        return f"Ledger(cold={sum(len(s.hashes) for s in self._cold)}, hot={len(self._hot)})"

    def get(self, redemption_id: str) -> Redemption | None:
        found = self._hot.get(redemption_id)
        if found is not None or not self._cold:
            return found
        hashed = id_hash(redemption_id)
        at = bisect.bisect_right(self._firsts, hashed) - 1
        return None if at < 0 else self._cold[at].find(hashed, redemption_id.encode())

    def __contains__(self, redemption_id: object) -> bool:
        return isinstance(redemption_id, str) and self.get(redemption_id) is not None

    def __getitem__(self, redemption_id: str) -> Redemption:
        found = self.get(redemption_id)
        if found is None:
            raise KeyError(redemption_id)
        return found

    def set(self, redemption_id: str, redemption: Redemption) -> "Ledger":
        changed = Ledger.__new__(Ledger)  # the cold tier's index shared, not built again
        changed._cold, changed._firsts, changed._cold_count = (
            self._cold,
            self._firsts,
            self._cold_count,
        )
        changed._hot = self._hot.set(redemption_id, redemption)
        return changed

    def compactable(self) -> bool:
        """Whether its hot map has grown enough to be turned into segments (`tiers.due`)."""
        return tiers.due(len(self._hot), self._cold_count, SEGMENT_ENTRIES)

    def compacting(self) -> Iterator["Ledger | None"]:
        """The same ledger all in cold segments, as a restart reads it back, yielded last;
        None after each step of merging the tiers (the caller may let others run)."""
        return tiers.compacting(self.segments(), Ledger)

    def __bool__(self) -> bool:
        return bool(self._cold) or bool(self._hot)

    def _sorted(self) -> Iterator[tuple[int, str, Redemption] | None]:
        """Every redemption by (hash, id), the hot copy of one that is in both tiers. The hot
        map is sorted a slice at a time, None yielded after each and after every
        `tiers.MERGE_STEP` entries merged (a step: the caller may let others run), so no
        single step holds the caller for long."""
        hot = iter(self._hot.items())
        runs: list[Iterator[tuple[int, int, str, Redemption]]] = []
        while piece := list(itertools.islice(hot, SEGMENT_ENTRIES)):
            runs.append(iter(sorted((id_hash(k), 0, k, r) for k, r in piece)))
            yield None
        for segment in self._cold:
            runs.append((h, 1, k, r) for h, k, r in segment.items())
        current, seen = -1, tuple[str, ...]()  # the ids of the hash being merged
        for n, (hashed, _, redemption_id, redemption) in enumerate(heapq.merge(*runs), 1):
            if n % tiers.MERGE_STEP == 0:
                yield None
            if hashed != current:
                current, seen = hashed, (redemption_id,)
            elif redemption_id not in seen:
                seen = (*seen, redemption_id)
            else:
                continue  # the cold copy of one in the hot map
            yield hashed, redemption_id, redemption

    def _entries(self) -> Iterator[tuple[int, str, Redemption]]:
        return (entry for entry in self._sorted() if entry is not None)

    def items(self) -> Iterator[tuple[str, Redemption]]:
        return ((k, r) for _, k, r in self._entries())

    def values(self) -> Iterator[Redemption]:
        return (r for _, _, r in self._entries())

    def segments(self) -> Iterator[Segment | None]:
        """Both tiers merged into cold segments, one built per step (for a snapshot); None for
        a step that built none yet (`_sorted`). A collision's entries stay in one segment, so
        a lookup needs only one."""
        for piece in tiers.pieces(self._sorted(), SEGMENT_ENTRIES, lambda entry: entry[0]):
            yield None if piece is None else Segment.build(piece)
