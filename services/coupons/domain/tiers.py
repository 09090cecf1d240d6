"""What the two-tier stores (`ledger`, `memo_bucket`) share: a hot persistent map over cold
sorted segments, written back to a snapshot as segments cut from their merged, sorted entries."""

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


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
