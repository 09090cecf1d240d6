"""Locating and running the PostgreSQL binaries; as root, server tools run as `postgres`."""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

PG_USER = "postgres"  # both the OS user (when root) and the database superuser


def find_pg_bindir() -> Path:
    """`pg_config --bindir` if it holds initdb, else the newest /usr/lib/postgresql/*/bin."""
    if (pg_config := shutil.which("pg_config")) is not None:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and (Path(out.stdout.strip()) / "initdb").exists():
            return Path(out.stdout.strip())
    debian = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if debian:
        newest = max(debian, key=lambda p: [int(n) for n in re.findall(r"\d+", p)])
        return Path(newest).parent
    raise RuntimeError("PostgreSQL server binaries not found: run .ci/install-system-packages")


def as_root() -> bool:
    return os.geteuid() == 0


def hand_over(root: Path, *paths: Path) -> None:
    """As root, make `root` and `paths` (directories or files) belong to the postgres user,
    creating that system user if the PostgreSQL package did not; check it can reach `root`."""
    if not as_root():
        return
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        log.warning("creating the missing system user", user=PG_USER)
        cmd = ["useradd", "--system", "--user-group", "--no-create-home", PG_USER]
        subprocess.run(cmd, check=True)
    for path in (root, *paths):
        shutil.chown(path, PG_USER, PG_USER)
    probe = subprocess.run(["runuser", "-u", PG_USER, "--", "test", "-w", str(root)], check=False)
    if probe.returncode != 0:
        raise RuntimeError(
            f"user {PG_USER!r} cannot reach {root}: put the state dir where every parent "
            "directory is searchable by it (not under /root)"
        )


def run(
    cmd: list[str], *, cwd: Path, server_side: bool, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool with PG* variables removed from its environment (PGDATA,
    PGPORT, ... must not redirect it); server-side tools run as the postgres user when root."""
    if server_side and as_root():
        cmd = ["runuser", "-u", PG_USER, "--", *cmd]
    out = subprocess.run(
        cmd,
        cwd=cwd,  # not the caller's cwd, which the postgres user may not be able to enter
        env={k: v for k, v in os.environ.items() if not k.startswith("PG")},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        start_new_session=True,  # keep the postmaster out of the terminal's Ctrl-C
        check=False,
    )
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout}{out.stderr}")
    return out
