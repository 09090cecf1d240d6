"""Snapshots of a writer's partition state, so a start folds only the events that follow.

**Never ahead of the log.** The writer's live state runs ahead of the log by the batch it is
deciding (`batch`), so it is not what is snapshotted. After each commit the tracker takes the
states the batch changed as they stood when it was sealed (committed now, immutable) into a
shadow of the committed states, and the committed command offset and event offset with them.
A snapshot is that shadow, and the memo less the keys of the batch decided since (its buckets
are persistent maps: taking them copies nothing). So it holds exactly the events before its
`next_offset`, all committed: a writer killed at any point after it resumes from it and folds
the rest, and one killed while writing it leaves chunks without a row, never read.

**Off the hot path.** One snapshot per partition is written at a time, every `every` events
appended, by a task of its own; it encodes one chunk at a time (`snapshot_codec`) and awaits
the store between chunks, so the decisions go on meanwhile. A snapshot that cannot be written
(PostgreSQL away) is logged and tried again after as many events: it is an optimisation, and
a decider must not stop deciding for it.

**Trusted only if sound.** At start the furthest snapshot is taken unless its version is not
this code's (`snapshot.outdated`), it stands past the log's end (the topic was recreated:
`snapshot.ahead_of_log`) or a chunk is missing or does not match its checksum
(`snapshot.corrupt`): then the one before it, else the log from offset 0. With the store
unreachable (`snapshot.store_unavailable`) a start folds the log, as it did before snapshots.
"""

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from services.coupons.domain.idempotency import slot_of
from services.coupons.domain.memo_bucket import Bucket
from services.coupons.writer import snapshot_codec
from services.coupons.writer.snapshot_codec import Chunk, CorruptSnapshot, Kind

log = structlog.get_logger(__name__)

_END = object()

EVERY = 100_000
"""Events appended to a partition between two snapshots of it, by default
(`COUPONS_SNAPSHOT_EVERY`)."""


class StoreUnavailable(Exception):
    """The store cannot be reached now (PostgreSQL down): start from the log instead."""


@dataclass(frozen=True)
class Header:
    id: int
    next_offset: int
    consumed: int
    version: str
    state_chunks: int
    memo_chunks: int


class Store(Protocol):
    async def save(
        self,
        topic: str,
        partition: int,
        next_offset: int,
        consumed: int,
        version: str,
        chunks: AsyncIterator[Chunk],
    ) -> Header: ...

    async def headers(self, topic: str, partition: int) -> list[Header]:
        """The partition's snapshots, the furthest first."""
        ...

    def chunks(self, header: Header, kind: Kind) -> AsyncIterator[tuple[bytes, bytes]]:
        """A snapshot's chunks of one kind, in order, as (body, checksum)."""
        ...


@dataclass(frozen=True)
class Loaded:
    """A snapshot read back: the events before `next_offset` folded."""

    states: dict[str, Any]
    memo: dict[int, Bucket]
    consumed: int
    next_offset: int


@dataclass
class _Tracked:
    """What of a partition is committed, as of its last commit."""

    states: dict[str, Any]
    consumed: int
    next_offset: int
    since: int = 0  # events appended since the last snapshot (or the load)
    writing: asyncio.Task[None] | None = field(default=None, repr=False)


SHARED_FOR_S = 30.0
"""How long a snapshot's states, once read, wait for another reader (`SharedStates`)."""


class SharedStates:
    """A snapshot's states read once for every reader of it in this process: the decider and
    the campaign view both start a partition from its last snapshot (the view without the
    memo). States are immutable values (the view is handed the writer's own after every
    commit), so each reader gets a dict of its own holding the same states. Read twice, twenty
    million redemptions' snapshots held the restart for twice their 2-4 s of checksums and
    decoding, and the process twice their ledgers' bytes."""

    def __init__(self) -> None:
        self._reads: dict[int, asyncio.Task[dict[str, Any]]] = {}

    async def read(
        self, header: Header, read: Callable[[], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any]:
        """`header`'s states: `read()`, unless a read of it is under way or ended within
        `SHARED_FOR_S` (its outcome, an error too)."""
        task = self._reads.get(header.id)
        if task is None:
            self._reads[header.id] = task = asyncio.ensure_future(read())
            loop = asyncio.get_running_loop()
            forget = functools.partial(self._reads.pop, header.id, None)
            task.add_done_callback(lambda _: loop.call_later(SHARED_FOR_S, forget))
        return dict(await asyncio.shield(task))  # a reader cancelled leaves it to the others


class Snapshots:
    """The snapshots of one event topic's partitions, read and written by the version
    `version` of the state's code; `shared` by the readers of this process."""

    def __init__(
        self,
        store: Store,
        topic: str,
        version: str,
        every: int = EVERY,
        shared: SharedStates | None = None,
    ) -> None:
        self._store = store
        self._topic = topic
        self.version = version
        self._every = every
        self._shared = shared or SharedStates()
        self._tracked: dict[int, _Tracked] = {}
        self._writing: set[asyncio.Task[None]] = set()

    async def load(self, partition: int, end: int, *, memo: bool = True) -> Loaded | None:
        """The furthest sound snapshot of `partition` (whose log ends at `end`), or None. With
        the store unreachable, None at once: a start folds the log rather than wait for it."""
        try:
            return await self._furthest(partition, end, memo)
        except StoreUnavailable as error:
            log.warning("snapshot.store_unavailable", partition=partition, error=str(error))
            return None

    async def _furthest(self, partition: int, end: int, memo: bool) -> Loaded | None:
        for header in await self._store.headers(self._topic, partition):
            where = {"topic": self._topic, "partition": partition, "snapshot": header.id}
            if header.version != self.version:
                log.warning("snapshot.outdated", **where, version=header.version)
                continue
            if header.next_offset > end:
                log.warning("snapshot.ahead_of_log", **where, at=header.next_offset, end=end)
                continue
            try:
                loaded = await self._read(header, memo)
            except CorruptSnapshot as error:
                log.error("snapshot.corrupt", **where, error=str(error))
                continue
            log.info("snapshot.loaded", **where, next_offset=header.next_offset)
            return loaded
        return None

    async def _read(self, header: Header, memo: bool) -> Loaded:
        states = await self._shared.read(header, functools.partial(self._states, header))
        buckets = snapshot_codec.MemoDecoder()
        if memo:
            await self._feed(header, "memo", header.memo_chunks, buckets.feed)
        return Loaded(states, buckets.finish(), header.consumed, header.next_offset)

    async def _states(self, header: Header) -> dict[str, Any]:
        states = snapshot_codec.StatesDecoder()
        await self._feed(header, "state", header.state_chunks, states.feed)
        return states.finish()

    async def _feed(
        self, header: Header, kind: Kind, count: int, feed: Callable[[bytes, bytes], None]
    ) -> None:
        """Feed `header`'s chunks of `kind` (body, checksum), which must be `count`."""
        read = 0
        async for body, checksum in self._store.chunks(header, kind):
            feed(body, checksum)
            read += 1
        if read != count:
            raise CorruptSnapshot(f"{read} {kind} chunks of {count}")

    def track(
        self, partition: int, states: dict[str, Any], consumed: int, at: int, memo: Any, folded: int
    ) -> None:
        """Start tracking a partition just loaded: `states` and `memo` folded up to offset `at`
        (all committed: read so). If that took `folded` events, as many as between two
        snapshots, it is snapshotted now (the log was there before the snapshots, or none was
        sound): the next start does not fold them again."""
        tracked = self._tracked[partition] = _Tracked(dict(states), consumed, at)
        if folded >= self._every:
            self._start_writing(partition, tracked, memo.buckets())

    def committed(
        self,
        partition: int,
        changed: dict[str, Any],
        consumed: int | None,
        appended: list[int],
        memo: Any,
        pending: Iterable[Any],
    ) -> None:
        """A batch of `partition` committed: the states it changed, as of its end; the command
        offset it consumed up to (None: no command of the topic); its events' offsets. When a
        snapshot is due, one starts, of the memo less the `pending` envelopes' keys (decided
        since, not committed)."""
        tracked = self._tracked.get(partition)
        if tracked is None:
            return
        tracked.states.update(changed)
        if consumed is not None:
            tracked.consumed = max(tracked.consumed, consumed)
        if appended:
            tracked.next_offset = appended[-1] + 1
            tracked.since += len(appended)
        if tracked.since < self._every or tracked.writing is not None:
            return
        uncommitted = {slot for e in pending if (slot := slot_of(e)) is not None}
        self._start_writing(partition, tracked, memo.buckets(without=uncommitted))

    def _start_writing(self, partition: int, tracked: _Tracked, buckets: dict[int, Bucket]) -> None:
        tracked.since = 0
        tracked.writing = asyncio.create_task(
            self._write(
                partition, dict(tracked.states), buckets, tracked.consumed, tracked.next_offset
            )
        )
        self._writing.add(tracked.writing)
        tracked.writing.add_done_callback(self._writing.discard)
        tracked.writing.add_done_callback(lambda _: setattr(tracked, "writing", None))

    async def _write(
        self,
        partition: int,
        states: dict[str, Any],
        buckets: dict[int, Bucket],
        consumed: int,
        next_offset: int,
    ) -> None:
        started = time.monotonic()
        longest = 0.0

        async def chunks() -> AsyncIterator[Chunk]:
            nonlocal longest
            steps = snapshot_codec.steps(states, buckets)
            while True:
                before = time.perf_counter()
                step = next(steps, _END)
                longest = max(longest, time.perf_counter() - before)
                if isinstance(step, Chunk):
                    yield step
                elif step is None:
                    await asyncio.sleep(0)  # a step without a chunk: let the loop run
                else:
                    return

        try:
            header = await self._store.save(
                self._topic, partition, next_offset, consumed, self.version, chunks()
            )
        except Exception as error:  # noqa: BLE001 - an optimisation: the writer goes on
            log.error("snapshot.write_failed", partition=partition, error=repr(error))
            return
        log.info(
            "snapshot.written",
            topic=self._topic,
            partition=partition,
            snapshot=header.id,
            next_offset=next_offset,
            chunks=header.state_chunks + header.memo_chunks,
            seconds=round(time.monotonic() - started, 3),
            longest_chunk_ms=round(longest * 1000, 1),
        )

    def forget(self, partition: int) -> None:
        """Stop tracking a partition given up. A snapshot being written is finished: it holds
        committed events only, so it is sound whoever owns the partition next (a long first
        fold that cost the group membership is then not folded again)."""
        self._tracked.pop(partition, None)

    async def close(self) -> None:
        """Abandon the snapshots being written (their chunks, without a row, are never read)."""
        writing = list(self._writing)
        for task in writing:
            task.cancel()
        await asyncio.gather(*writing, return_exceptions=True)
