"""The API's side of the decider: hand a command to its partition's writer, then await its reply.

A command goes to the decider that owns its partition in memory when that decider runs in this
process (`same_process`), through a local socket when it runs on this host (`local_sockets`),
else it is appended to the commands topic (acks=all). A
command handed over but not answered within `HANDOVER_PATIENCE_S` (its decider crashed or gave
the partition up before deciding it) is appended to the topic after all, so every command is
decided; one decided twice is answered from the memo the second time.

Every API replica tails the replies topic from the moment it starts and resolves the waits of
the commands it sent. A command decided in the process that sent it is answered in memory
(`answer`), and one decided in another process of the same host through a local socket, both
without the replies topic. A client that times out can retry with the same Idempotency-Key and
gets the first outcome back.
"""

import asyncio
from typing import TypeVar
from uuid import UUID

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from contracts.base import Frozen
from contracts.codec import REPLIES, MalformedMessage
from contracts.envelope import Envelope
from contracts.replies import Reply
from contracts.topics import Topics
from services.coupons.bus import kafka, local_sockets
from services.coupons.bus.same_process import SameProcess
from services.coupons.logs import RepeatLimiter

log = structlog.get_logger(__name__)

AnyCommand = TypeVar("AnyCommand", bound=Frozen)

HANDOVER_PATIENCE_S = 2.0
"""How long a command handed to a local decider waits for its reply before it is appended to
the topic: far above a decision's time even on a saturated host (p99 under 1 s)."""


class DecisionPending(TimeoutError):
    """The command is durably queued but the decider has not answered in time."""


class CommandGateway:
    def __init__(
        self,
        bootstrap: str,
        topics: Topics,
        partitions: dict[str, int],
        timeout_s: float,
        same_process: SameProcess | None = None,
    ) -> None:
        """`same_process` hands commands to a writer of this process in memory."""
        self._bootstrap = bootstrap
        self._same_process = same_process
        self._topics = topics
        self._partitions = partitions[topics.commands.name]
        self._reply_partitions = partitions[topics.replies.name]
        self._timeout_s = timeout_s
        self._producer = kafka.producer(bootstrap)
        self._replies: AIOKafkaConsumer = kafka.reader(bootstrap)
        self._waiting: dict[UUID, asyncio.Future[Reply]] = {}
        self._tail: asyncio.Task[None] | None = None
        self._inbox = local_sockets.Inbox(local_sockets.reply_address(), self._resolve)
        self._outbox = local_sockets.Outbox()
        self._headers: list[tuple[str, bytes]] = []  # what every command carries but its type

    async def start(self) -> None:
        if self._inbox.open():
            self._headers = [(local_sockets.HEADER, self._inbox.address)]
        else:
            log.warning("gateway.no_local_sockets", detail="commands and replies go by Kafka")
        await self._producer.start()
        await self._replies.start()
        tps = [TopicPartition(self._topics.replies.name, p) for p in range(self._reply_partitions)]
        self._replies.assign(tps)
        await self._replies.seek_to_end(*tps)
        for tp in tps:  # resolve the end offsets now, so no reply sent after start is skipped
            await self._replies.position(tp)
        self._tail = asyncio.create_task(self._read_replies(), name="gateway.replies")

    async def stop(self) -> None:
        if self._tail is not None:
            self._tail.cancel()
        await self._replies.stop()
        await self._producer.stop()
        self._inbox.close()
        self._outbox.close()

    def healthy(self) -> bool:
        return self._tail is not None and not self._tail.done()

    async def decide(self, command: Envelope[AnyCommand], *, caller_resends: bool = False) -> Reply:
        """Hand `command` to its decider, or append it durably, and wait for the reply.
        `caller_resends`: the caller sends the command again itself, with the same key, when
        it gets no answer (the automations' sender), so a command handed over is waited for
        until the timeout and never appended as well: under load a hand-over can wait longer
        than HANDOVER_PATIENCE_S for its transaction, and appending it too decided it twice."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s
        waiter: asyncio.Future[Reply] = loop.create_future()
        self._waiting[command.id] = waiter
        partition = kafka.partition_for(command.key, self._partitions)
        try:
            if self._hand_over(partition, command):
                if caller_resends:  # what goes unanswered, it sends again: never appended too
                    return await asyncio.wait_for(waiter, max(deadline - loop.time(), 0))
                patience = min(HANDOVER_PATIENCE_S, self._timeout_s)
                try:
                    return await asyncio.wait_for(asyncio.shield(waiter), patience)
                except TimeoutError:
                    log.warning("gateway.handover_unanswered", command_id=str(command.id))
            appended = self._producer.send_and_wait(
                self._topics.commands.name,
                command.to_bytes(),
                key=command.key.encode(),
                partition=partition,
                headers=[("type", command.type.encode()), *self._headers],
            )
            # bounded too: with the broker away the append would wait for it; the caller's
            # retry with the same key is decided once, whether or not this one went out
            await asyncio.wait_for(appended, max(deadline - loop.time(), 0))
            return await asyncio.wait_for(waiter, max(deadline - loop.time(), 0))
        except TimeoutError as error:
            raise DecisionPending(str(command.id)) from error
        finally:
            self._waiting.pop(command.id, None)

    def _hand_over(self, partition: int, command: Envelope[AnyCommand]) -> bool:
        """Hand the command to its partition's decider if it runs in this process (in
        memory) or listens on this host (through its local socket)."""
        if not self._inbox.is_open:
            return False  # it could not reply here
        address = local_sockets.owner(self._bootstrap, self._topics.commands.name, partition)
        if self._same_process is not None and self._same_process.hand(
            address, command, self._inbox.address
        ):
            return True
        datagram = local_sockets.command_datagram(self._inbox.address, command.to_bytes())
        return self._outbox.send(address, datagram)

    def answer(self, reply: Reply) -> bool:
        """Resolve the wait for `reply` if this process sent its command; False if no wait of
        this process's is for it. The replies topic's reader calls it, and so does a decider
        running in this process, whose reply then need not go through the broker."""
        waiter = self._waiting.get(reply.command_id)
        if waiter is None:
            return False
        if not waiter.done():
            waiter.set_result(reply)
        return True

    def _awaits(self, key: bytes | None) -> bool:
        try:
            return key is None or UUID(key.decode()) in self._waiting
        except ValueError:
            return True  # let the decoder report it

    async def _read_replies(self) -> None:
        """For ever: an error of the broker (away, restarting) is logged and the reading goes
        on, so the gateway answers again as soon as the broker is back."""
        repeats = RepeatLimiter()
        while True:
            try:
                batches = await self._replies.getmany(timeout_ms=1000)
            except KafkaError as error:
                if (dropped := repeats.allow(type(error).__name__)) is not None:
                    log.warning("gateway.replies_unavailable", error=repr(error), like=dropped)
                await asyncio.sleep(1)
                continue
            for records in batches.values():
                for record in records:
                    if self._awaits(record.key):  # else another replica's: all read all
                        self._resolve(record.value)

    def _resolve(self, value: bytes) -> None:
        """Answer with an encoded reply, from the replies topic or the local socket."""
        try:
            reply = REPLIES.decode(value).data
        except MalformedMessage as error:
            log.error("gateway.unreadable_reply", reason=error.reason)
            return
        self.answer(reply)
