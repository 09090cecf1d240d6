"""Fetch the Kafka broker jars with Maven, once per version of deploy/kafka/pom.xml."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import structlog

from .process import pid_alive

log = structlog.get_logger(__name__)

DEPLOY_KAFKA = Path(__file__).resolve().parents[2] / "deploy" / "kafka"
DEFAULT_POM = DEPLOY_KAFKA / "pom.xml"
DEFAULT_LOG4J_CONFIG = DEPLOY_KAFKA / "log4j2.properties"
_COMPLETE = ".complete"
CLASS_ARCHIVE = "kafka.jsa"  # AppCDS archive of the broker's classes: ~1 s faster JVM start


def default_cache_dir(env: Mapping[str, str] = os.environ) -> Path:
    """`$COUPONS_CACHE_DIR`, else `~/.cache/growthos-coupons`."""
    if env.get("COUPONS_CACHE_DIR"):
        return Path(env["COUPONS_CACHE_DIR"]).expanduser()
    return Path.home() / ".cache" / "growthos-coupons"


def kafka_jars(cache_dir: Path, pom: Path = DEFAULT_POM) -> Path:
    """The directory holding every broker jar for this pom, running Maven only on a cache miss.

    The cache key is a hash of the pom, so bumping the Kafka version fetches new jars next to
    the old ones. Maven writes into a temporary sibling directory that is renamed into place
    when complete, so an interrupted fetch never leaves a half-filled cache entry behind.
    """
    key = hashlib.sha256(pom.read_bytes()).hexdigest()[:16]
    jars = cache_dir / "kafka-jars" / key
    if (jars / _COMPLETE).exists():
        return jars
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError("mvn not found on PATH: run .ci/install-system-packages")
    jars.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=jars.parent))
    started = time.monotonic()
    log.info("fetching Kafka jars with Maven (once per pom version)", pom=str(pom), into=str(jars))
    try:
        result = subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "dependency:copy-dependencies",
                f"-DoutputDirectory={tmp}",
                "-DincludeScope=runtime",
                "-f",
                str(pom),
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0 or not any(tmp.glob("kafka_*.jar")):
            raise RuntimeError(
                f"mvn dependency:copy-dependencies failed (exit {result.returncode}):\n"
                f"{result.stdout[-4000:]}{result.stderr[-4000:]}"
            )
        (tmp / _COMPLETE).write_text(f"{pom}\n")
        try:
            tmp.rename(jars)
        except OSError:  # a concurrent run won the race (or a stale incomplete entry is there)
            if not (jars / _COMPLETE).exists():
                shutil.rmtree(jars, ignore_errors=True)
                tmp.rename(jars)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("Kafka jars ready", seconds=round(time.monotonic() - started, 1))
    return jars


def class_archive_flags(jars: Path) -> tuple[list[str], Path | None]:
    """JVM flags to use the broker's class-data archive, or to dump one at exit if missing.

    Returns the temporary dump path, to hand to keep_class_archive() once the JVM has exited.
    The archive lives with the jars it describes; a JDK upgrade only makes the JVM ignore it.
    """
    archive = jars / CLASS_ARCHIVE
    if archive.exists():
        return [f"-XX:SharedArchiveFile={archive}"], None
    for stale in jars.glob(f"{CLASS_ARCHIVE}.*.tmp"):  # dumps of runs that died meanwhile
        writer = stale.name.split(".")[2]
        if not writer.isdigit() or not pid_alive(int(writer)):
            stale.unlink(missing_ok=True)
    tmp = jars / f"{CLASS_ARCHIVE}.{os.getpid()}.tmp"
    return [f"-XX:ArchiveClassesAtExit={tmp}"], tmp


def keep_class_archive(tmp: Path, *, clean_exit: bool) -> None:
    """Promote a dump written by a cleanly exited JVM; discard anything else."""
    if clean_exit and tmp.exists() and tmp.stat().st_size > 0:
        tmp.replace(tmp.with_name(CLASS_ARCHIVE))
        log.info("saved the broker class-data archive for faster starts", path=str(tmp.parent))
    tmp.unlink(missing_ok=True)
