"""What the two-tier stores (`ledger`, `memo_bucket`) share: a hot persistent map over cold
sorted segments, written back to a snapshot as segments cut from their merged, sorted entries,
and compacted by a long fold the same way (the hot map merged into fresh segments)."""

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
S = TypeVar("S")
R = TypeVar("R")


def pieces(
    entries: Iterable[T | None], size: int, key: Callable[[T], object]
) -> Iterator[list[T] | None]:
    """`entries` (sorted, None after each step of their sorting) cut into lists of at least
    `size`, never parting entries of the same `key` (a lookup then reads one segment); None
    passed through for a step that cut none yet, so the caller may let others run."""
    piece: list[T] = []
    for entry in entries:
        if entry is None:
            yield None
        elif len(piece) >= size and key(entry) != key(piece[-1]):
            yield piece
            piece = [entry]
        else:
            piece.append(entry)
    if piece:
        yield piece


MERGE_STEP = 1_000
"""Entries merged between two steps (a None) of a store's `_sorted`: a segment merged at once
(20,000 entries, up to half a second of CPU) held a first start's loop for seconds on a loaded
machine, longer than a consumer group's session."""

COMPACT_RATIO = 0.5
"""A long fold (`long_folds`) turns a store's hot map into cold segments once it holds this
fraction of the cold entries (and a segment's worth at least): each entry is then merged again
about 1 / COMPACT_RATIO times in all (the cold tier grows geometrically), and at most a third
of the entries are hot, as maps (about five times a cold entry's bytes), the rest compact.
Measured (docs/performance/resilience.md): 0.5 costs a decider's fold about 30 % more CPU,
0.25 about 55 %."""


def due(hot: int, cold: int, least: int) -> bool:
    """Whether a store with `hot` entries in its map over `cold` in segments is compacted now."""
    return hot >= least and hot >= COMPACT_RATIO * cold


def compacting(
    segments: Iterable[S | None], build: Callable[[tuple[S, ...]], R]
) -> Iterator[R | None]:
    """A store's merged `segments` (None between steps, passed through) gathered into the
    store `build` makes of them, yielded last: the store as a restart reads it back."""
    built: list[S] = []
    for segment in segments:
        if segment is not None:
            built.append(segment)
        yield None
    yield build(tuple(built))
