"""What sent a run, as the sender needs it: an automation or a broadcast, loaded once per
batch of runs."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from contracts.automations import Limits
from contracts.commands import Channel
from projections.db import Connection
from services.coupons.automations import store
from services.coupons.automations.verdict import Source

ONCE = Limits(per_contact=1)
_GONE = Source("automation", "", 0, False, None, ONCE, 0)


@dataclass(frozen=True)
class Route:
    channel: Channel
    source_ref: str | None


class Sources:
    def __init__(self, sources: dict[str, Source], routes: dict[str, Route]) -> None:
        self._sources = sources
        self._routes = routes

    def source(self, run: Any) -> Source:
        return self._sources.get(run["source_id"], _GONE)

    def route(self, run: Any) -> Route:
        return self._routes.get(run["source_id"], Route("api", None))


async def sources_for(conn: Connection, runs: Sequence[Any], now: datetime) -> Sources:
    ids = {r["source_id"] for r in runs}
    sources: dict[str, Source] = {}
    routes: dict[str, Route] = {}
    automations, broadcasts = await store.sources(conn, ids)
    for a in automations.values():
        d = a.definition
        sources[a.id] = Source(
            "automation", a.id, a.version, a.live_at(now), a.condition, d.limits,
            d.holdout_percent,
        )  # fmt: skip
        routes[a.id] = Route(d.channel, d.source_ref)
    for broadcast_id, b in broadcasts.items():
        d = b["definition"]
        live = b["status"] in ("scheduled", "running")
        sources[broadcast_id] = Source(
            "broadcast", broadcast_id, 1, live, None, ONCE, d.holdout_percent
        )
        routes[broadcast_id] = Route(d.channel, d.source_ref)
    return Sources(sources, routes)
