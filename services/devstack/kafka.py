"""A single-node Apache Kafka (KRaft, combined broker + controller) run from Maven-fetched jars.

State layout under `<state_dir>/kafka/`: `server.properties` (rewritten on every start, so
ports may change between runs), `data/` (log dirs, formatted once), `broker.log` (the JVM's
stdout/stderr; the previous run's log is kept as `broker.log.prev`), `broker.pid`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import structlog
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from . import jars, process

log = structlog.get_logger(__name__)

NODE_ID = 1
JVM_OPTS = (  # as Kafka's own start scripts, with a smaller heap
    *("-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20"),
    *("-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent"),
    "-Djava.awt.headless=true",
)


def stop_leftover_kafka(state_dir: Path, timeout: float = 30.0) -> bool:
    """Stop a broker a previous (crashed or killed) run left behind. True if one was running."""
    pid_file = state_dir / "kafka" / "broker.pid"
    pid = process.read_pid_file(pid_file)
    props = str(state_dir / "kafka" / "server.properties")
    running = pid is not None and process.pid_alive(pid) and props in process.cmdline(pid)
    if pid is not None and running:
        log.warning("stopping a Kafka broker left over by a previous run", pid=pid)
        process.stop_process(pid, name="kafka", timeout=timeout)
    pid_file.unlink(missing_ok=True)
    return running


def _cluster_id() -> str:
    """A random UUID in Kafka's URL-safe base64 form, never looking like a CLI flag."""
    cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    return _cluster_id() if cid.startswith("-") else cid


async def _registered(bootstrap: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await asyncio.wait_for(admin.start(), 5)
        cluster = await asyncio.wait_for(admin.describe_cluster(), 5)
        return any(b["node_id"] == NODE_ID for b in cluster["brokers"])
    except (KafkaError, OSError, TimeoutError):
        return False
    finally:
        await admin.close()


class LocalKafka:
    def __init__(
        self,
        state_dir: Path,
        *,
        port: int,
        controller_port: int | None = None,
        cache_dir: Path,
        pom: Path = jars.DEFAULT_POM,
        log4j_config: Path = jars.DEFAULT_LOG4J_CONFIG,
        fresh: bool = False,
    ) -> None:
        """`fresh`: start on empty storage, dropping what an earlier broker left there (the
        test suite's: thousands of partitions of finished tests make a broker start slowly)."""
        self.dir = state_dir / "kafka"
        self.fresh = fresh
        self.port = port
        self.controller_port = controller_port  # None: a free port is picked on each start
        self.cache_dir = cache_dir
        self.pom = pom
        self.log4j_config = log4j_config
        self.log_file = self.dir / "broker.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._archive_tmp: Path | None = None
        self._cancel = threading.Event()

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> None:
        """Fetch jars if needed, format storage once, start the broker and wait until ready."""
        stop_leftover_kafka(self.dir.parent)
        if process.port_open(self.port):
            raise RuntimeError(f"port {self.port} is already in use: cannot start Kafka on it")
        jar_dir = jars.kafka_jars(self.cache_dir, self.pom)
        if self.fresh:
            shutil.rmtree(self.dir / "data", ignore_errors=True)
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        props = self._write_properties()
        java = self._java(jar_dir)
        if not (self.dir / "data" / "meta.properties").exists():
            fmt = "kafka.tools.StorageTool", "format", "-t", _cluster_id(), "-c", str(props)
            out = subprocess.run([*java, *fmt], capture_output=True, text=True, check=False)
            if out.returncode != 0:
                raise RuntimeError(f"kafka storage format failed:\n{out.stdout}{out.stderr}")
        if self._cancel.is_set():
            raise process.Cancelled
        if self.log_file.exists():
            self.log_file.replace(self.log_file.with_name("broker.log.prev"))
        cds_flags, self._archive_tmp = jars.class_archive_flags(jar_dir)
        with self.log_file.open("wb") as out_file:
            self._proc = subprocess.Popen(
                [*java, *cds_flags, "kafka.Kafka", str(props)],
                stdin=subprocess.DEVNULL,
                stdout=out_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal must not hit the JVM first
            )
        (self.dir / "broker.pid").write_text(f"{self._proc.pid}\n")
        log.info("Kafka broker starting", pid=self._proc.pid, log=str(self.log_file))
        self._wait_ready(time.monotonic() + timeout)

    def _wait_ready(self, deadline: float) -> None:
        assert self._proc is not None
        while True:
            if self._cancel.is_set():
                raise process.Cancelled
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"Kafka exited with {self._proc.returncode}:\n{process.tail(self.log_file)}"
                )
            # Registered means unfenced: producers (idempotent too) and groups work from now.
            if process.port_open(self.port) and asyncio.run(_registered(self.bootstrap_servers)):
                log.info("Kafka ready", bootstrap_servers=self.bootstrap_servers)
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kafka not ready in time:\n{process.tail(self.log_file)}")
            time.sleep(0.2)

    def cancel(self) -> None:
        """Make a start() running in another thread give up soon."""
        self._cancel.set()

    def stop(self, timeout: float = 30.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            stop_leftover_kafka(self.dir.parent, timeout)
            return
        process.stop_process(proc.pid, name="kafka", timeout=timeout, child=proc)
        (self.dir / "broker.pid").unlink(missing_ok=True)
        log.info("Kafka stopped", returncode=proc.returncode)
        if self._archive_tmp is not None:
            jars.keep_class_archive(self._archive_tmp, clean_exit=proc.returncode in (0, 143))
            self._archive_tmp = None

    @contextlib.contextmanager
    def hung(self) -> Iterator[None]:
        """The broker frozen (SIGSTOP) with its connections open, as a stalled host is:
        clients wait for answers that do not come, and nothing refuses them. Thawed on exit."""
        assert self._proc is not None, "only a broker this object started"
        self._proc.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self._proc.send_signal(signal.SIGCONT)

    def _java(self, jar_dir: Path) -> list[str]:
        java_home = os.environ.get("JAVA_HOME")
        java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
        if java is None:
            raise RuntimeError("java not found: run .ci/install-system-packages")
        log4j = f"-Dlog4j2.configurationFile={self.log4j_config}"
        logs_dir = f"-Dkafka.logs.dir={self.dir / 'logs'}"
        return [java, *JVM_OPTS, log4j, logs_dir, "-cp", f"{jar_dir}/*"]

    def _write_properties(self) -> Path:
        cport = self.controller_port or process.free_port()
        settings = {
            "process.roles": "broker,controller",
            "node.id": NODE_ID,
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{cport}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            # Static quorum: the controller port lives only in this file, so it may change
            # between runs (a dynamic `--standalone` quorum records it in the metadata log).
            "controller.quorum.voters": f"{NODE_ID}@127.0.0.1:{cport}",
            "log.dirs": self.dir / "data",
            "num.partitions": 3,
            "auto.create.topics.enable": "false",
            "group.initial.rebalance.delay.ms": 0,
            "offsets.topic.replication.factor": 1,
            "transaction.state.log.replication.factor": 1,
            "transaction.state.log.min.isr": 1,
            "share.coordinator.state.topic.replication.factor": 1,
            "share.coordinator.state.topic.min.isr": 1,
            # Fewer internal partitions: quicker first consumer group / transaction on 2 cores.
            "offsets.topic.num.partitions": 10,
            "transaction.state.log.num.partitions": 10,
            "share.coordinator.state.topic.num.partitions": 10,
        }
        props = self.dir / "server.properties"
        lines = [f"{k}={str(v).replace(chr(92), chr(92) * 2)}" for k, v in settings.items()]
        props.write_text(
            "# Written by services.devstack on every start.\n" + "\n".join(lines) + "\n"
        )
        return props
