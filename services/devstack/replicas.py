"""Three replicas of the service over six partitions: what `bench/replicas.py` measures and
`tests/integration/test_replicas.py` checks. Campaigns are chosen one or more per partition, so
every partition's writer has work; `RetryingLoad`'s clients spread over the replicas and, when
theirs stops answering, retry the same key on the next; `reassigned` reads, from the survivors'
logs, when every partition of the killed replica's decider was taken over."""

import asyncio
import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from services.coupons.bus import kafka
from services.devstack.fleet import Fleet

REPLICAS = ("r1", "r2", "r3")
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def campaign_ids(partitions: int, per_partition: int, tag: str) -> list[str]:
    """`per_partition` campaign ids landing on each partition (Kafka's partitioner)."""
    found: dict[int, list[str]] = {p: [] for p in range(partitions)}
    for n in itertools.count():
        cid = f"rep-{tag}-{n}"
        owned = found[kafka.partition_for(cid, partitions)]
        if len(owned) < per_partition:
            owned.append(cid)
        if all(len(ids) == per_partition for ids in found.values()):
            return [cid for ids in found.values() for cid in ids]
    raise AssertionError("unreachable")


async def define(http: httpx.AsyncClient, campaign_id: str) -> str:
    """An uncapped campaign whose code is its id (upper case); its code."""
    code = campaign_id.upper().replace("-", "")
    created = await http.post(
        "/v1/campaigns",
        json={
            "id": campaign_id,
            "name": campaign_id,
            "code": code,
            "discount": {"kind": "amount", "amount_off": 100, "currency": "EUR"},
            "limits": {"per_contact": None},
        },
    )
    created.raise_for_status()
    return code


@dataclass
class RetryingLoad:
    """`clients` checkout clients, spread over `bases` and over `codes`, each redeeming with a
    new key once the last is answered (a closed loop) and retrying a key on the next replica
    after a lost connection or a 503, until answered."""

    bases: Sequence[str]
    api_key: str
    codes: Sequence[str]
    clients: int = 16
    key_prefix: str = "rep-"
    accepted: dict[str, tuple[str, float]] = field(default_factory=dict)
    """key -> (redemption id, when)."""
    refused: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    measured: float = 0.0
    """Redemptions a second, as the bench measured them (`rate`)."""
    _next: int = 0
    _stop: bool = False

    def stop(self) -> None:
        self._stop = True

    async def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        limits = httpx.Limits(max_connections=self.clients * 2)
        async with httpx.AsyncClient(headers=headers, timeout=30, limits=limits) as http:
            await asyncio.gather(*(self._client(http, c) for c in range(self.clients)))

    async def _client(self, http: httpx.AsyncClient, client: int) -> None:
        replica = client
        while not self._stop:
            n, self._next = self._next, self._next + 1
            key = f"{self.key_prefix}{n}"
            body = {
                "code": self.codes[n % len(self.codes)],
                "customer": {"contact_id": f"c{n}"},
                "cart": {"currency": "EUR", "amount": 2000},
                "order_ref": f"{self.key_prefix}o{n}",
            }
            while True:
                base = self.bases[replica % len(self.bases)]
                try:
                    answer = await http.post(
                        f"{base}/v1/redemptions", json=body, headers={"Idempotency-Key": key}
                    )
                except httpx.TransportError:
                    replica += 1  # the next replica, as a load balancer would
                    await asyncio.sleep(0.1)
                    continue
                if answer.status_code == 201:
                    self.accepted[key] = (answer.json()["redemption_id"], time.monotonic())
                    break
                if answer.status_code == 503:
                    await asyncio.sleep(0.2)
                    continue
                if answer.status_code >= 500:
                    self.errors.append(f"{answer.status_code} {answer.text[:200]}")
                    await asyncio.sleep(0.2)
                    continue
                self.refused[key] = answer.text[:200]
                break

    def codes_accepted_since(self, since: float) -> set[str]:
        """The codes (so the campaigns, so the partitions) redeemed since `since`."""
        numbers = [int(k.removeprefix(self.key_prefix)) for k, (_, at) in self.accepted.items()]
        whens = [at for _, at in self.accepted.values()]
        return {
            self.codes[n % len(self.codes)]
            for n, at in zip(numbers, whens, strict=True)
            if at > since
        }

    def longest_pause(self, since: float, until: float) -> float:
        """The longest time any campaign (so any partition) went without an accepted
        redemption between the two instants: what a rebalance costs checkout."""
        times: dict[str, list[float]] = {code: [since, until] for code in self.codes}
        for key, (_, at) in self.accepted.items():
            if since < at < until:
                n = int(key.removeprefix(self.key_prefix))
                times[self.codes[n % len(self.codes)]].append(at)
        return max(max(b - a for a, b in itertools.pairwise(sorted(t))) for t in times.values())

    def rate(self, since: float, until: float) -> float:
        """Redemptions accepted a second between the two instants (monotonic)."""
        done = sum(1 for _, at in self.accepted.values() if since <= at < until)
        return done / (until - since)


def _acquired(log: Path, after: datetime) -> dict[int, datetime]:
    """Partition -> when this process's decider last acquired it, after `after`."""
    found: dict[int, datetime] = {}
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return found
    for line in lines:
        if "decider.partition_acquired" not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        at = datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00"))
        if at > after:
            found[int(entry["partition"])] = at
    return found


def held(fleet: Fleet, name: str) -> set[int]:
    """The partitions `name`'s decider holds now: those it acquired last."""
    mine = _acquired(fleet.members[name].log, EPOCH)
    others = [_acquired(fleet.members[o].log, EPOCH) for o in fleet.members if o != name]
    return {p for p, at in mine.items() if all(o.get(p, EPOCH) <= at for o in others)}


async def reassigned(
    fleet: Fleet, partitions: set[int], killed_at: datetime, timeout_s: float = 60
) -> float:
    """Seconds from `killed_at` (a UTC time) until the live members' deciders acquired every
    one of `partitions`, read from their logs."""
    deadline = time.monotonic() + timeout_s
    while True:
        taken: dict[int, datetime] = {}
        for name in fleet.members:
            if fleet.alive(name):
                taken.update(_acquired(fleet.members[name].log, killed_at))
        if partitions <= taken.keys():
            return max((taken[p] - killed_at).total_seconds() for p in partitions)
        if time.monotonic() > deadline:
            raise TimeoutError(f"partitions {sorted(partitions - taken.keys())} not taken over")
        await asyncio.sleep(0.2)
