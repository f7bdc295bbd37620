"""`python -m gpuproof.local` (make local): run the local stack in the foreground until Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType
from typing import Any

from gpuproof.local import aws_calls, hooks
from gpuproof.local.stack import LocalStack


class ServiceChildFilter(logging.Filter):
    """Drops the records of `service`'s own loggers ("gpuproof", "gpuproof.workers...") at the root:
    Powertools' handler on the "gpuproof" logger has printed them already. Powertools' SuppressFilter
    does this with a substring test, which drops "gpuproof_local" (the stack's own lines) too."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == self.service or record.name.startswith(self.service + "."))


class StackLogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The root handler of `python -m gpuproof.local`: it keeps every line of the stack."""

    def addFilter(self, filter: Any) -> None:
        from aws_lambda_powertools.logging.filters import SuppressFilter

        if isinstance(filter, SuppressFilter):
            filter = ServiceChildFilter(filter.logger)
        super().addFilter(filter)


def configure_logging(level: str) -> StackLogHandler:
    handler = StackLogHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    return handler


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpuproof-local", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="HTTP front port (default: a free one)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--schedule-interval",
        type=float,
        default=None,
        help="seconds between schedule ticks (default: template)",
    )
    parser.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="template parameter override, e.g. AllowCpuBackend=true (repeatable)",
    )
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument(
        "--moto-endpoint",
        default=None,
        metavar="URL",
        help="use a moto server already running there (python -m gpuproof.local.moto_process), "
        "reusing the resources a stack made there before; default: start one in this process",
    )
    parser.add_argument(
        "--chain-endpoint",
        default=None,
        metavar="URL",
        help="publish to a local chain node already running there (ws://host:port); "
        "the stack funds its oracle account on it",
    )
    parser.add_argument(
        "--test-double-gpu",
        action="store_true",
        help="TEST DOUBLE: register the model 'GPUPROOF TEST DOUBLE GPU' (gpuproof.local.double_gpu) "
        "in this process's reference table, so the probe's GPU path can run against the NVML and "
        "CUDA test doubles; proves nothing about any GPU",
    )
    parser.add_argument(
        "--hang-at",
        choices=hooks.HANG_POINTS,
        default=None,
        help="TEST HOOK: the chain publisher blocks forever at this point (to SIGKILL the stack there)",
    )
    return parser


def stack_for(args: argparse.Namespace) -> LocalStack:
    """The stack the command line asks for (not started)."""
    parameters = dict(p.split("=", 1) for p in args.parameter)
    return LocalStack(
        endpoint_url=args.moto_endpoint,
        host=args.host,
        port=args.port,
        schedule_interval_s=args.schedule_interval,
        parameters=parameters,
        chain_url=args.chain_endpoint,
        test_double_gpu=args.test_double_gpu,
    )


def main(argv: list[str] | None = None) -> int:
    args = arguments().parse_args(argv)
    record_to = aws_calls.install_from_environment()
    configure_logging(args.log_level)

    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    if args.hang_at is not None:
        hooks.hang_publisher_at(args.hang_at)
    stack = stack_for(args)
    with stack:
        print(f"gpuproof local stack: API  {stack.api_url}", flush=True)
        print(f"                      moto {stack.endpoint_url} (region us-east-1)", flush=True)
        print("  export AWS_ENDPOINT_URL=" + stack.endpoint_url, flush=True)
        for name, value in sorted(stack.environment.items()):
            print(f"  {name}={value}", flush=True)
        print("Ctrl-C stops it.", flush=True)
        stopping.wait()
        print("stopping...", file=sys.stderr, flush=True)
    if record_to is not None:
        aws_calls.recorder.dump(record_to)
    return 0


if __name__ == "__main__":
    sys.exit(main())
