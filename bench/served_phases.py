"""Where the served engine's CPU goes under validations: `coupons serve` (one worker, as
`bench/checkout.py` serves it) under wrk's closed loop, sampled from inside.

    python bench/served_phases.py --seconds 20

The engine runs this script as its command (`serve`): before serving, it starts the sampler
of `bench/lane_phases.py` on the main thread (the event loop), which counts each sample
against the innermost function of `lane_phases.PHASES` on the stack, else against the
package of the innermost Python frame (uvicorn, aiokafka, ...), else "event loop: waiting,
or in C"; it writes its counts when the app shuts down. The driver provisions Kafka and
PostgreSQL as `bench/checkout.py` does (BENCH_KAFKA_PORT, BENCH_PG_PORT, BENCH_STATE_DIR), runs
wrk for `--seconds`, and prints the shares, with the CPU per validation of the engine's
event loop thread (over the answered requests) to turn them into µs. The in-process figure
(`bench/lane.py`) leaves out the HTTP server and whatever else the served process runs: this
is the difference.
"""

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script

from bench import lane_phases

WAITING = "event loop (uvloop, in C)"
OTHER = lane_phases.innermost_phase(None, {})


SERVER = ("site-packages/uvicorn/", "site-packages/httptools/")
"""The HTTP server's own code, counted as "uvicorn" even when a phase called it (the answer's
two `send`s): the floor pays it too."""


def _label(frame: FrameType | None, codes: dict[CodeType, str]) -> str:
    if frame is None:
        return WAITING
    path = frame.f_code.co_filename
    if any(part in path for part in SERVER):
        return "uvicorn"
    if (phase := lane_phases.innermost_phase(frame, codes)) != OTHER:
        return phase
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if "/services/coupons/" in path:
        return "services/coupons/" + path.split("/services/coupons/", 1)[1]
    if path.endswith(("asyncio/runners.py", "asyncio/base_events.py", "uvicorn/server.py")):
        return WAITING
    return "/".join(path.rsplit("/", 2)[-2:])  # the standard library's, or "<frozen ...>"


def serve() -> None:
    from services.coupons import app as composition
    from services.coupons import cli

    codes = lane_phases._codes()
    sampler = lane_phases.Sampler(lambda frame: _label(frame, codes))

    def write() -> None:
        Path(os.environ["BENCH_SAMPLES_FILE"]).write_text(json.dumps(sampler.cpu_ns))

    create_app = composition.create_app

    def sampled(settings: Any) -> Any:
        app = create_app(settings)

        async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "http" and scope["path"] == "/bench/samples/reset":
                sampler.cpu_ns.clear()  # the driver's: what follows is the measured phase
                await send({"type": "http.response.start", "status": 204, "headers": []})
                await send({"type": "http.response.body", "body": b""})
                return
            if scope["type"] != "lifespan":
                await app(scope, receive, send)
                return

            async def stopping(message: dict[str, Any]) -> None:
                if message["type"] == "lifespan.shutdown.complete":
                    sampler.stop()
                    write()
                await send(message)

            await app(scope, receive, stopping)

        return asgi

    composition.create_app = sampled
    sys.setswitchinterval(0.00025)  # so the sampler gets its turns
    sampler.start()
    sys.argv[1:] = ["serve"]
    cli.main()


def drive(seconds: int, connections: int, idle_only: bool) -> None:
    import httpx
    import targets
    from loads import Load, process_ticks

    from services.devstack.stack import default_state_dir, provisioned

    kafka_port = int(os.environ.get("BENCH_KAFKA_PORT", "30192"))
    pg_port = int(os.environ.get("BENCH_PG_PORT", "30532"))
    state_dir = Path(os.environ.get("BENCH_STATE_DIR") or default_state_dir() / "bench")
    samples_file = state_dir / "samples.json"
    samples_file.unlink(missing_ok=True)
    load = Load("validations", connections=connections)
    with (
        provisioned(
            state_dir, kafka_port=kafka_port, pg_port=pg_port, database="coupons_bench"
        ) as endpoints,
        targets.engine(
            endpoints,
            state_dir,
            workers=1,
            campaigns=1,
            command=("bench/served_phases.py", "serve"),
            extra_env={"BENCH_SAMPLES_FILE": str(samples_file)},
        ) as engine,
    ):
        load.run(engine.base_url, 5, engine.env)  # warm-up
        idle_before = process_ticks(engine.pid)
        time.sleep(5)
        idle = (process_ticks(engine.pid) - idle_before) / 5  # jiffies a second, no load
        httpx.post(f"{engine.base_url}/bench/samples/reset")
        ticks = process_ticks(engine.pid)
        if idle_only:  # what the engine does on its own
            time.sleep(seconds)
            found = {"requests": 1}
        else:
            found = load.run(engine.base_url, seconds, engine.env)
        ticks = process_ticks(engine.pid) - ticks
    samples: Counter[str] = Counter(json.loads(samples_file.read_text()))
    hertz = os.sysconf("SC_CLK_TCK")
    requests = int(found["requests"])
    cpu_us = sum(samples.values()) / 1e3 / requests  # the event loop's thread: the sampler
    # thread's own CPU (a few % of a CPU) is the process's, not the service's
    total = sum(samples.values())
    average = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{requests / seconds:.0f} validations/s, load average {average}")
    print(f"idle engine: {idle / hertz:.1%} of a CPU")
    main_thread = sum(samples.values()) / 1e9 / seconds
    print(
        f"measured phase: the process {ticks / hertz / seconds:.1%} of a CPU, its event loop's"
        f" thread {main_thread:.1%}"
    )
    print(f"{'phase':<50} {'share':>6} {'µs':>6}")
    for label, count in samples.most_common(40):
        print(f"{label:<50} {count / total:6.1%} {count / total * cpu_us:6.1f}")
    print(f"{'CPU per validation (the event loop thread)':<50} {'':>6} {cpu_us:6.1f}")


def main() -> None:
    if sys.argv[1:2] == ["serve"]:
        serve()
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--idle", action="store_true", help="sample the engine without load")
    args = parser.parse_args()
    drive(args.seconds, args.connections, args.idle)


if __name__ == "__main__":
    main()
