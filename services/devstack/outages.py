"""Rehearse an outage: a running service under checkout load from clients that retry with
their idempotency keys, as real ones do, while Kafka or PostgreSQL is stopped for a while and
started again. It measures what a user sees: the slowest `/readyz` answer during the outage,
any bare `500`, and the seconds from the dependency's return to the first accepted
redemption and to `/readyz` 200. Used by `tests/integration/test_outages.py` (10 s outages)
and `bench/outages.py` (`make outages`: 60 s and 3 min)."""

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx


@dataclass
class Recovery:
    dependency: str
    outage_s: float
    slowest_readyz_s: float = 0.0
    """The slowest `/readyz` answer during the outage."""
    readyz_during: set[int] = field(default_factory=set)
    """The statuses `/readyz` answered during the outage."""
    server_errors: list[str] = field(default_factory=list)
    """Answers of 500 or more other than 503 with an error code, anywhere in the run."""
    first_accepted_after_s: float | None = None
    """From the dependency's return to the first redemption accepted after it."""
    ready_after_s: float | None = None
    """From the dependency's return to `/readyz` 200."""


@dataclass
class CheckoutLoad:
    """`clients` concurrent checkout clients redeeming `code` once per key, each retrying its
    key after a `503` or a lost connection until it gets another answer."""

    base_url: str
    api_key: str
    code: str
    clients: int = 8
    key_prefix: str = "outage-"
    contact_of: Callable[[int], str] = lambda n: f"c{n}"
    """The contact of the n-th key: its own by default; `lambda n: f"c{n // 2}"` makes every
    contact try twice, with two keys, against a per-contact limit."""
    accepted: dict[str, float] = field(default_factory=dict)  # key -> when
    redemptions: dict[str, str] = field(default_factory=dict)  # key -> redemption id
    refused: dict[str, str] = field(default_factory=dict)  # key -> error code
    errors: list[str] = field(default_factory=list)
    _next: int = 0
    _stop: bool = False

    async def run(self, keys: int, pace_s: float = 0.02) -> None:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        async with httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=30) as http:
            await asyncio.gather(*(self._client(http, keys, pace_s) for _ in range(self.clients)))

    def stop(self) -> None:
        """Send no new key; the keys in flight are still retried until answered."""
        self._stop = True

    async def _client(self, http: httpx.AsyncClient, keys: int, pace_s: float) -> None:
        while not self._stop and self._next < keys:
            await self.redeem_next(http)
            await asyncio.sleep(pace_s)

    async def redeem_next(self, http: httpx.AsyncClient) -> str | None:
        """Redeem with the next key, retried until answered (even after `stop()`): the
        redemption id if accepted. `http` carries the API key."""
        n, self._next = self._next, self._next + 1
        key = f"{self.key_prefix}{n}"
        body = {
            "code": self.code,
            "customer": {"contact_id": self.contact_of(n)},
            "cart": {"currency": "EUR", "amount": 2000},
            "order_ref": f"{self.key_prefix}o{n}",
        }
        while True:
            try:
                answer = await http.post(
                    f"{self.base_url}/v1/redemptions", json=body, headers={"Idempotency-Key": key}
                )
            except httpx.TransportError:
                await asyncio.sleep(0.5)
                continue
            if answer.status_code == 201:
                self.accepted[key] = time.monotonic()
                found: str = answer.json()["redemption_id"]
                self.redemptions[key] = found
                return found
            if answer.status_code >= 500 and not _coded_503(answer):
                self.errors.append(f"{answer.status_code} {answer.text[:200]}")
            if answer.status_code >= 500:
                await asyncio.sleep(0.5)
                continue
            self.refused[key] = answer.json()["error"]["code"]
            return None


def _coded_503(answer: httpx.Response) -> bool:
    try:
        return answer.status_code == 503 and bool(answer.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return False


async def rehearse(
    load: CheckoutLoad,
    dependency: str,
    stop: Callable[[], None],
    start: Callable[[], None],
    outage_s: float,
    recovery_timeout_s: float = 120,
) -> Recovery:
    """Stop the dependency for `outage_s` under `load` (already running), start it again, and
    wait until the service accepts redemptions and is ready again."""
    found = Recovery(dependency, outage_s)
    async with httpx.AsyncClient(base_url=load.base_url, timeout=60) as http:
        await asyncio.to_thread(stop)
        down_until = time.monotonic() + outage_s
        while time.monotonic() < down_until:
            asked = time.monotonic()
            try:
                status = (await http.get("/readyz")).status_code
            except httpx.TransportError:
                status = 0
            found.slowest_readyz_s = max(found.slowest_readyz_s, time.monotonic() - asked)
            found.readyz_during.add(status)
            await asyncio.sleep(max(0.0, min(1.0, down_until - time.monotonic())))
        await asyncio.to_thread(start)
        back = time.monotonic()
        deadline = back + recovery_timeout_s
        while time.monotonic() < deadline and found.ready_after_s is None:
            try:
                if (await http.get("/readyz")).status_code == 200:
                    found.ready_after_s = time.monotonic() - back
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
        while time.monotonic() < deadline:
            if any(at >= back for at in load.accepted.values()):
                break
            await asyncio.sleep(0.2)
        after = [at for at in load.accepted.values() if at >= back]
        if after:
            found.first_accepted_after_s = min(after) - back
    found.server_errors = list(load.errors)
    return found
