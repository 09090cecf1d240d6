"""What a request costs this machine's CPU when it comes alone: one small write on a loopback
TCP socket, back to back and paced (as one redemption's Kafka request at 200 a second), and a
paced wake-up alone. On the shared 2-core virtual machine a lone send costs 5-7 times a hot
one and each wake-up some 40-60 µs: at low rates every round trip of the engine (to Kafka,
to PostgreSQL) and every wake of its event loop pays that, whatever the Python around it
(docs/performance/checkout.md).

    python bench/wakeups.py [--pace-ms 5] [--count 2000]
"""

import argparse
import os
import socket
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pace-ms", type=float, default=5.0)
    parser.add_argument("--count", type=int, default=2000)
    args = parser.parse_args()
    pace = args.pace_ms / 1000
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    reader = os.fork()
    if reader == 0:  # the other end: reads everything, as a broker would
        conn, _ = server.accept()
        while conn.recv(65536):
            pass
        os._exit(0)
    client = socket.create_connection(server.getsockname())
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    message = b"x" * 100

    def per_call(paced: bool, send: bool) -> float:
        count = args.count if paced else args.count * 10
        started = time.process_time()
        for _ in range(count):
            if send:
                client.send(message)
            if paced:
                time.sleep(pace)
        return 1e6 * (time.process_time() - started) / count

    hot = per_call(paced=False, send=True)
    paced = per_call(paced=True, send=True)
    asleep = per_call(paced=True, send=False)
    print(f"a 100-byte send on loopback, back to back: {hot:.1f} µs of CPU")
    print(f"the same, one every {args.pace_ms:g} ms: {paced:.1f} µs (wake-up included)")
    print(f"the wake-up alone, every {args.pace_ms:g} ms: {asleep:.1f} µs")
    print(f"so a lone send costs {paced - asleep:.1f} µs, {(paced - asleep) / hot:.0f}x a hot one")
    client.close()
    os.waitpid(reader, 0)


if __name__ == "__main__":
    main()
