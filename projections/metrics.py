"""Counters of this process's projection runners, exported at `/metrics` and
`/v1/projections`: events applied per projection, dead letters per projection and reason."""

from collections import Counter

APPLIED: Counter[str] = Counter()
DEAD_LETTERS: Counter[tuple[str, str]] = Counter()
