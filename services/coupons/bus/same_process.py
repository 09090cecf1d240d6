"""Commands handed from a gateway to the writer of its own process, in memory.

With one worker (`COUPONS_WORKERS=1`, as `make run` serves) the API's command gateway and the
writer of the command's partition share a process. Through the local socket
(`local_sockets`), as between sibling processes, a command is encoded, sent, woken for by the
event loop, read, decoded and validated again, and only decided once the writer's loop has
woken too: 0.4-0.5 ms from the gateway to the decision at 50-300 redemptions a second, in a
redemption of 3.5-4 ms (the trace in docs/performance/checkout.md). Here the gateway hands
the envelope itself over and the writer decides it at once,
in the gateway's own turn of the event loop; what that saves is measured there too.

A writer takes commands for its partition here exactly while it listens on the partition's
local socket: it opens and closes both together, so the owner is the same whichever way a
command comes, and everything else holds as for the socket. A command handed over is not
durable until its transaction commits: if no reply comes in time, the gateway appends it to
the commands topic after all, and the memo answers a second delivery from the first.
Whatever cannot be handed here (no writer of this process owns the partition) goes to the
socket, else the topic.
"""

from collections.abc import Callable
from typing import Any

from contracts.envelope import Envelope

Take = Callable[[Envelope[Any], bytes | None], None]
"""A writer's intake: the command and where its sender listens for the reply, if anywhere."""


class SameProcess:
    """The writers of this process that take commands in memory, by their socket's address
    (`local_sockets.owner`)."""

    def __init__(self) -> None:
        self._takers: dict[bytes, Take] = {}

    def listen(self, address: bytes, take: Take) -> None:
        self._takers[address] = take

    def close(self, address: bytes) -> None:
        self._takers.pop(address, None)

    def hand(self, address: bytes, command: Envelope[Any], reply_to: bytes | None) -> bool:
        """Whether a writer of this process took `command` (False: none listens here)."""
        take = self._takers.get(address)
        if take is None:
            return False
        take(command, reply_to)
        return True
