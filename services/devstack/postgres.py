"""A throwaway PostgreSQL cluster under `<state_dir>/postgres/`: data/, run/ (unix socket),
postgres.log. PostgreSQL refuses to run as root, so as root the server runs as the `postgres`
system user and the state directory must be reachable by that user (see pgtools)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import structlog

from . import pgtools
from .pgtools import PG_USER
from .process import port_open

log = structlog.get_logger(__name__)

_DB_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,62}")
_CONF = "growthos-devstack.conf"  # included from postgresql.conf, rewritten on every start
_HBA = """\
# Written by services.devstack: trust, but only on the unix socket and 127.0.0.1.
local all all trust
host  all all 127.0.0.1/32 trust
"""
_SETTINGS = """\
# Written by services.devstack on every start.
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{socket_dir}'
max_connections = 200
# A million-code batch writes about half a gigabyte of WAL and more table and index pages than
# the default 128MB of buffers hold: with the defaults the server evicts dirty pages and
# checkpoints (every 1 GB of WAL) mid-batch, and after each checkpoint the next writes log
# whole pages again. `bench/codes.py` went from 26.8 to 24.6 s with these (medians of 3).
shared_buffers = 1GB
max_wal_size = 8GB
checkpoint_timeout = 15min
effective_cache_size = 4GB
maintenance_work_mem = 256MB
fsync = on
synchronous_commit = on
timezone = 'UTC'
log_timezone = 'UTC'
log_line_prefix = '%m [%p] %q%u@%d '
log_min_duration_statement = 1000
"""


def stop_leftover_postgres(state_dir: Path) -> None:
    """Stop a server a previous (crashed or killed) run left behind; drop a stale pid file."""
    LocalPostgres(state_dir, port=0, database="postgres").stop_leftover()


class LocalPostgres:
    def __init__(
        self, state_dir: Path, *, port: int, database: str, bindir: Path | None = None
    ) -> None:
        if not _DB_NAME.fullmatch(database):
            raise ValueError(f"unsupported database name {database!r}")
        self.root = state_dir / "postgres"
        self.data = self.root / "data"
        self.port = port
        self.database = database
        self.bindir = bindir
        self.log_file = self.root / "postgres.log"

    @property
    def database_url(self) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{self.database}"

    def start(self, timeout: float = 60.0) -> None:
        """initdb once, start with `pg_ctl -w`, create the database if missing."""
        (self.root / "run").mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        pgtools.hand_over(self.root, self.root / "run")
        self.stop_leftover()
        if port_open(self.port):
            raise RuntimeError(f"port {self.port} is already in use: cannot start PostgreSQL")
        if not (self.root / "initialized").exists():
            self._initdb()
        socket_dir = str(self.root / "run").replace("'", "''")
        conf = self.data / _CONF
        conf.write_text(_SETTINGS.format(port=self.port, socket_dir=socket_dir))
        pgtools.hand_over(self.root, conf)
        self._pg("pg_ctl", "-D", self.data, "-l", self.log_file, "-w", "-t", timeout, "start")
        log.info("PostgreSQL ready", port=self.port, log=str(self.log_file))
        self._ensure_database()

    def cancel(self) -> None:
        """Nothing to interrupt: every step of start() is bounded by its own timeout."""

    def stop(self, mode: str = "fast") -> None:
        """`mode` "immediate" stops it as a crash would (no checkpoint: the next start runs
        crash recovery), for rehearsals of faults (`make chaos`)."""
        if self.is_running():
            self._pg("pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")
            log.info("PostgreSQL stopped", mode=mode)

    def stop_leftover(self) -> None:
        """A server left running by a crashed run is stopped; a stale postmaster.pid removed."""
        if self.is_running():
            log.warning("stopping a PostgreSQL server left over by a previous run")
            self.stop()
        else:
            (self.data / "postmaster.pid").unlink(missing_ok=True)

    def is_running(self) -> bool:
        if not (self.data / "PG_VERSION").exists():
            return False
        return self._pg("pg_ctl", "-D", self.data, "status", check=False).returncode == 0

    def _initdb(self) -> None:
        shutil.rmtree(self.data, ignore_errors=True)  # a half-done initdb from a killed run
        self._pg(
            "initdb", "-D", self.data, "-U", PG_USER, "-E", "UTF8", "--locale=C.UTF-8",
            "--auth-local=trust", "--auth-host=trust",
        )  # fmt: skip
        (self.data / "pg_hba.conf").write_text(_HBA)
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(f"\ninclude_if_exists = '{_CONF}'\n")
        (self.root / "initialized").write_text("initdb done\n")

    def _ensure_database(self) -> None:
        query = f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'"
        if self._client("psql", "-XtAq", "-d", "postgres", "-c", query).stdout.strip() != "1":
            self._client("createdb", self.database)
            log.info("created database", database=self.database)

    def _bin(self, name: str) -> str:
        self.bindir = self.bindir or pgtools.find_pg_bindir()
        return str(self.bindir / name)

    def _pg(self, tool: str, *args: object, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [self._bin(tool), *map(str, args)]
        return pgtools.run(cmd, cwd=self.root, server_side=True, check=check)

    def _client(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        conn = ["-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER]
        return pgtools.run([self._bin(tool), *conn, *args], cwd=self.root, server_side=False)
