"""The contact events the contacts benchmarks produce (bench/contacts.py, contacts_profile.py),
in two workloads:

* **first sight**: every event a NEW contact (`c<n>`), `plan` and `score` set, a page view every
  third. Against the bench's segments (`score >= 5k` for k < 20, and a timed one) each new
  contact enters about 10.5 of 21: ten membership rows and ten outbox messages per event.
* **steady state**: events on contacts already profiled (the first-sight contacts), the usual
  mix: 55 % `page.viewed` with a path, 20 % `usage.milestone_reached` with a milestone, 25 %
  `contact.updated` moving `score` (which the 20 score segments read) by one either way. A move
  crosses a multiple of 5, so enters or leaves one segment, one time in five: about 5 % of the
  events change a membership.
"""

import json
import random
import time
from collections.abc import Iterator

Keyed = tuple[bytes, bytes]
"""A record's key (the contact id) and value (the event's JSON)."""

PATHS = ("/pricing", "/docs", "/blog", "/changelog", "/settings")
MILESTONES = ("first_project", "ten_projects", "invited_teammate", "api_key", "export")


def iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def contact(n: int) -> str:
    return f"c{n:08d}"


def first_score(n: int) -> int:
    return n % 100


def first_sight(count: int, at: float) -> Iterator[Keyed]:
    """(key, value) of contact n's first event, for n < count."""
    for n in range(count):
        kind = "page.viewed" if n % 3 == 0 else "contact.updated"
        body = {
            "id": f"k{n}",
            "type": kind,
            "contact_id": contact(n),
            "occurred_at": iso(at),
            "traits": {"plan": ("free", "pro")[n % 2], "score": first_score(n)},
            "properties": {"path": "/pricing"} if kind == "page.viewed" else {},
        }
        yield contact(n).encode(), json.dumps(body).encode()


class Steady:
    """Steady-state events over `known` contacts profiled by `first_sight`; remembers each
    contact's score so that a move is one either way, as a real trait drifts."""

    def __init__(self, known: int, seed: int = 18) -> None:
        self._known = known
        self._random = random.Random(seed)
        self._scores: dict[int, int] = {}
        self._sent = 0

    def events(self, count: int, at: float) -> Iterator[Keyed]:
        pick = self._random
        for _ in range(count):
            n = pick.randrange(self._known)
            roll = pick.random()
            body: dict[str, object] = {
                "id": f"s{self._sent:09d}",  # in sending order: a later move wins
                "contact_id": contact(n),
                "occurred_at": iso(at),
            }
            if roll < 0.55:
                body.update(type="page.viewed", properties={"path": pick.choice(PATHS)})
            elif roll < 0.75:
                milestone = pick.choice(MILESTONES)
                body.update(type="usage.milestone_reached", properties={"milestone": milestone})
            else:
                score = self._scores.get(n, first_score(n))
                score = min(99, max(0, score + pick.choice((-1, 1))))
                self._scores[n] = score
                body.update(type="contact.updated", traits={"score": score})
            self._sent += 1
            yield contact(n).encode(), json.dumps(body).encode()
