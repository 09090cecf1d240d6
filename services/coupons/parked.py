"""Counters of what this process's consumers parked instead of processing, by consumer and
reason: exported at `/metrics` and reported by `/readyz` (docs/architecture.md, "Parked
messages"). A parked message is in the dead-letter topic, or (the campaign view, a decider
folding its partition) skipped and logged."""

from collections import Counter

PARKED: Counter[tuple[str, str]] = Counter()
"""(consumer, reason) -> messages parked since this process started."""
