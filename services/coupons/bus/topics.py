"""Create the declared topics at start-up, and refuse to run on a mismatched layout."""

import asyncio
import contextlib
from typing import Any

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from contracts.topics import Topics

log = structlog.get_logger(__name__)


class TopicLayoutError(RuntimeError):
    pass


async def ensure_topics(bootstrap: str, topics: Topics, replication_factor: int) -> dict[str, int]:
    """Create missing topics; return every declared topic's actual partition count."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics.all() if t.name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another replica was first
                await admin.create_topics(
                    [
                        NewTopic(
                            t.name,
                            t.partitions,
                            replication_factor,
                            topic_configs=t.config(replication_factor),
                        )
                        for t in missing
                    ]
                )
            log.info("topics.created", topics=[t.name for t in missing])
        described = await _with_leaders(admin, [t.name for t in topics.all()])
        counts = {d["topic"]: len(d["partitions"]) for d in described}
        if counts[topics.commands.name] != counts[topics.events.name]:
            raise TopicLayoutError(
                f"{topics.commands.name} and {topics.events.name} must have the same partition "
                f"count (found {counts}); the decider of command partition p owns event partition p"
            )
        return counts
    finally:
        await admin.close()


async def _with_leaders(
    admin: AIOKafkaAdminClient, names: list[str], timeout_s: float = 60
) -> list[dict[str, Any]]:
    """Describe `names` once every partition has a leader (just-created topics need a moment:
    on a busy broker their metadata may list no partitions at first; a broker just started
    on a loaded machine was seen to take over 30 s to elect them)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        described: list[dict[str, Any]] = await admin.describe_topics(names)
        leaderless = [
            d["topic"]
            for d in described
            if d.get("error_code")
            or not d["partitions"]
            or any(p["leader"] < 0 for p in d["partitions"])
        ]
        if not leaderless:
            return described
        if asyncio.get_running_loop().time() > deadline:
            raise TopicLayoutError(f"no leader for every partition of {leaderless}")
        await asyncio.sleep(0.1)
