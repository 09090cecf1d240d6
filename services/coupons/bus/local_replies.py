"""Replies to another process of the same host, without the broker.

A gateway listens on a Unix datagram socket in Linux's abstract namespace (no file), named by
a random address it puts on every command it sends (the `reply-to` header). A decider in
another process that can reach that name (the same host and network namespace: the sibling
workers of `COUPONS_WORKERS`) sends the reply there. Where it cannot (another host, the
gateway's process gone, its receive buffer full), it sends the reply to the replies topic as
before. Either way a reply is not durable: a lost one leaves the caller to retry with its
Idempotency-Key, and the memo answers it.
"""

import asyncio
import contextlib
import socket
import uuid
from collections.abc import Callable

HEADER = "reply-to"
_NAMESPACE = b"\0growthos-coupons.replies."
_MAX_DATAGRAM = 256 * 1024  # a reply is about a kilobyte
_RECEIVE_BUFFER = 4 * 1024 * 1024  # a burst of replies waits here for the event loop


class Inbox:
    """A gateway's socket: each datagram received is handed to `deliver`."""

    def __init__(self, deliver: Callable[[bytes], None]) -> None:
        self.address = uuid.uuid4().hex.encode()
        self._deliver = deliver
        self._socket: socket.socket | None = None

    def open(self) -> bool:
        """Listen; False where abstract Unix sockets do not exist (not Linux)."""
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
                datagram = self._socket.recv(_MAX_DATAGRAM)
            except BlockingIOError:
                return
            self._deliver(datagram)


class Outbox:
    """A decider's socket for sending replies to gateways of this host."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.setblocking(False)

    def send(self, address: bytes, datagram: bytes) -> bool:
        """Whether the gateway at `address` got it (False: no such gateway here, or no room)."""
        try:
            self._socket.sendto(datagram, _NAMESPACE + address)
        except OSError:
            return False
        return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._socket.close()
