"""Commands and replies between processes of the same host, without the broker.

Both go over Unix datagram sockets in Linux's abstract namespace: no file, and a name is gone
with the process that bound it. Only processes of the same host and network namespace (the
sibling workers of `COUPONS_WORKERS`) reach each other this way; whatever cannot goes through
Kafka as before, so this is a shortcut, never the only way.

* **Replies.** A gateway listens at a random address, which it puts on every command it sends
  (the `reply-to` header, or the command's datagram). A decider that can reach it sends the
  reply there; else to the replies topic. A reply is not durable either way: a lost one leaves
  the caller to retry with its Idempotency-Key, and the memo answers it.
* **Commands.** The decider that owns command partition p listens at a name made of the
  cluster's bootstrap address, the commands topic and p (`owner`). A gateway sends a command
  there instead of appending it to the topic; the decider decides it with the partition's
  others, in its transaction. A name belongs to one process at a time, so two processes never
  both take commands for p; a decider that gives p up closes it. A command handed over is not
  durable until it is decided, so the gateway appends it to the topic after all if no reply
  comes in time (the decider lost it, crashing or giving p up), and the memo makes a command
  decided twice an answer from the first.
"""

import asyncio
import contextlib
import functools
import hashlib
import secrets
import socket
from collections.abc import Callable

HEADER = "reply-to"
_NAMESPACE = b"\0growthos-coupons."
MAX_DATAGRAM = 256 * 1024  # a larger command (a chunk of codes) goes through the topic
_RECEIVE_BUFFER = 4 * 1024 * 1024  # a burst waits here for the event loop


def reply_address() -> bytes:
    """A gateway's own address for its replies."""
    return b"replies." + secrets.token_hex(16).encode()


@functools.cache
def owner(bootstrap: str, commands_topic: str, partition: int) -> bytes:
    """The address of the decider of `partition`: processes that reach the same cluster by
    the same bootstrap address and use the same topics share it, and no others."""
    deployment = hashlib.sha256(f"{bootstrap}/{commands_topic}".encode()).hexdigest()[:32]
    return f"commands.{deployment}.p{partition}".encode()


def command_datagram(reply_to: bytes, command: bytes) -> bytes:
    """A command and where to reply to it (an address never holds a newline)."""
    return reply_to + b"\n" + command


def read_command_datagram(datagram: bytes) -> tuple[bytes, bytes]:
    """(reply-to address, encoded command)."""
    reply_to, _, command = datagram.partition(b"\n")
    return reply_to, command


class Inbox:
    """A socket bound to `address`: each datagram received is handed to `deliver`."""

    def __init__(self, address: bytes, deliver: Callable[[bytes], None]) -> None:
        self.address = address
        self._deliver = deliver
        self._socket: socket.socket | None = None

    @property
    def is_open(self) -> bool:
        return self._socket is not None

    def open(self) -> bool:
        """Listen; False if another process holds the name, or on a system without abstract
        Unix sockets (not Linux)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECEIVE_BUFFER)
            sock.bind(_NAMESPACE + self.address)
        except OSError:
            sock.close()
            return False
        sock.setblocking(False)
        asyncio.get_running_loop().add_reader(sock.fileno(), self._receive)
        self._socket = sock
        return True

    def close(self) -> None:
        if self._socket is not None:
            asyncio.get_running_loop().remove_reader(self._socket.fileno())
            self._socket.close()
            self._socket = None

    def _receive(self) -> None:
        assert self._socket is not None, "the reader is removed before the socket closes"
        while True:
            try:
                datagram = self._socket.recv(MAX_DATAGRAM)
            except BlockingIOError:
                return
            self._deliver(datagram)


class Outbox:
    """A socket for sending to the inboxes of this host."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.setblocking(False)

    def send(self, address: bytes, datagram: bytes) -> bool:
        """Whether the inbox at `address` got it (False: nobody listens there on this host,
        its buffer is full, or the datagram is too large)."""
        if len(datagram) > MAX_DATAGRAM:
            return False
        try:
            self._socket.sendto(datagram, _NAMESPACE + address)
        except OSError:
            return False
        return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._socket.close()
