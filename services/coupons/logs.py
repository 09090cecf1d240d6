"""structlog set-up: one JSON object per line (or coloured lines for a person at a terminal),
with the correlation id bound per request, per command and per event through contextvars.

Repeated library errors are rate-limited: while the broker is away, aiokafka reports every
reconnect attempt (about 2,000 lines a second were seen), which would fill a disk. One line
per kind (logger and message template) is written per `REPEAT_INTERVAL_S`, and the next one
says how many like it were dropped."""

import logging
import sys
import time
from collections.abc import Hashable

import structlog

REPEAT_INTERVAL_S = 10.0


class RepeatLimiter:
    """At most one event per key per interval."""

    def __init__(self, interval_s: float = REPEAT_INTERVAL_S) -> None:
        self._interval_s = interval_s
        self._last: dict[Hashable, float] = {}
        self._dropped: dict[Hashable, int] = {}

    def allow(self, key: Hashable, now: float | None = None) -> int | None:
        """None when this event is to be dropped; else how many like it were dropped since the
        last one allowed."""
        now = time.monotonic() if now is None else now
        last = self._last.get(key)
        if last is not None and now - last < self._interval_s:
            self._dropped[key] = self._dropped.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._dropped.pop(key, 0)


class RepeatFilter(logging.Filter):
    """A standard-library filter: repeated records of the same logger, level and message
    template pass once per interval, the next one saying how many were dropped."""

    def __init__(self, interval_s: float = REPEAT_INTERVAL_S) -> None:
        super().__init__()
        self._limiter = RepeatLimiter(interval_s)
        self._interval_s = interval_s

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        dropped = self._limiter.allow((record.name, record.levelno, str(record.msg)))
        if dropped is None:
            return False
        if dropped:
            record.msg = f"{record.msg} [{dropped} like it dropped in {self._interval_s:g} s]"
        return True


def configure(level: str = "INFO", fmt: str | None = None) -> None:
    """`fmt` None: coloured console lines when stdout is a terminal, else JSON."""
    if fmt is None:
        fmt = "console" if sys.stdout.isatty() else "json"
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    # Libraries (aiokafka, uvicorn) log through the standard library: render them the same way.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
