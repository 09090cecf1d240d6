"""Commands handed to the writers by gateways of this host instead of through the broker:
over the local socket at which a partition's owner listens (`bus.local_sockets`), or in
memory by a gateway of the same process (`bus.same_process`), who then need not encode,
send and decode it. Either way the engine's loop is woken to decide it.

A command handed over has no offset, so it moves no checkpoint; one lost with its writer is
appended to the topic by its gateway after a while, and decided then (a second delivery of
one decided already is a retry, answered from the memo)."""

import asyncio
import functools
from collections.abc import Callable
from typing import Any

from contracts.envelope import Envelope
from services.coupons.bus import local_sockets
from services.coupons.bus.same_process import SameProcess
from services.coupons.writer.batch import Handed, HandedHere
from services.coupons.writer.transactions import Writer

REBIND_S = 1.0
"""How often a writer whose socket name is still held elsewhere tries again."""


class Intake:
    def __init__(
        self,
        writers: dict[int, Writer],
        step: Callable[[Writer, float], None],
        same_process: SameProcess | None,
    ) -> None:
        """`writers`: the engine's, by partition; `step` decides what a writer has waiting
        (the engine's); `same_process` is this process's gateways' hand-over, if any."""
        self._writers = writers
        self._step = step
        self._same_process = same_process
        self._handed: asyncio.Future[None] | None = None  # resolved when a command is handed
        self.failed: Exception | None = None
        """What deciding a command handed in memory raised: the loop's to raise."""

    def woken(self) -> asyncio.Future[None]:
        """Resolved when a command is handed over, for the loop to wait on."""
        if self._handed is None or self._handed.done():
            self._handed = asyncio.get_running_loop().create_future()
        return self._handed

    def inbox(self, bootstrap: str, topic: str, partition: int) -> local_sockets.Inbox:
        """The socket a partition's writer takes its host's commands at (not yet open)."""
        address = local_sockets.owner(bootstrap, topic, partition)
        return local_sockets.Inbox(address, functools.partial(self._take_handed, partition))

    def listen(self, writer: Writer, now: float) -> None:
        """Open the writer's inbox if another process still held its name last time (the
        partition's previous owner, giving it up); take this process's commands in memory
        while it is open."""
        if not writer.inbox.is_open and now - writer.bound_at >= REBIND_S:
            writer.bound_at = now
            if writer.inbox.open() and self._same_process is not None:
                take = functools.partial(self._take_here, writer.partition)
                self._same_process.listen(writer.inbox.address, take)

    def close(self, writer: Writer) -> None:
        """Stop taking the writer's commands: what it holds undecided, its gateways send to
        the topic."""
        if self._same_process is not None:
            self._same_process.close(writer.inbox.address)
        writer.inbox.close()

    def _take_handed(self, partition: int, datagram: bytes) -> None:
        """Queue a command a gateway of this host handed over; if p is no longer ours, drop
        it (its gateway appends it to the topic when no reply comes)."""
        writer = self._writers.get(partition)
        if writer is None:
            return
        reply_to, value = local_sockets.read_command_datagram(datagram)
        writer.waiting.append(Handed(value, reply_to))
        self._wake()

    def _take_here(self, partition: int, command: Envelope[Any], reply_to: bytes | None) -> None:
        """Decide a command this process's gateway hands over in memory at once, in the
        gateway's turn of the event loop: the loop need not wake first. A failure is the run
        loop's to raise, never the gateway's."""
        writer = self._writers.get(partition)
        if writer is None:  # given up meanwhile: its gateway appends it to the topic in time
            return
        writer.waiting.append(HandedHere(command, reply_to))
        try:
            self._step(writer, asyncio.get_running_loop().time())
        except Exception as error:  # noqa: BLE001 - raised by the run loop: the writer restarts
            self.failed = error
        self._wake()

    def _wake(self) -> None:
        if self._handed is not None and not self._handed.done():
            self._handed.set_result(None)
