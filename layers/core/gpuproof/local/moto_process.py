"""`python -m gpuproof.local.moto_process`: moto alone, in a process of its own, until SIGTERM.

Stacks started with `python -m gpuproof.local --moto-endpoint URL` keep their state there, so a
stack killed with SIGKILL can be restarted on the same tables, streams, queues, buckets and keys
(tests/e2e/test_process_kill.py).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from gpuproof.local.moto_server import MotoServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpuproof-local-moto", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    args = parser.parse_args(argv)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stopping.set())
    server = MotoServer(args.port or None).start()
    print(f"moto {server.endpoint_url}", flush=True)
    stopping.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
