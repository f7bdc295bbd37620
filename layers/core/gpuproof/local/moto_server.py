"""moto in server mode on 127.0.0.1: the local stand-in for DynamoDB, SQS, KMS and streams."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server

from gpuproof.local.template import LOCAL_REGION

HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def aws_environment(endpoint_url: str) -> dict[str, str]:
    """What boto3, botocore and PynamoDB read to talk to the local endpoint with dummy credentials."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_DEFAULT_REGION": LOCAL_REGION,
        "AWS_REGION": LOCAL_REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
    }


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class AtomicDynamoDB:
    """DynamoDB applies each request atomically (a conditional write checks and writes as one);
    moto's backend does not lock, and the server answers requests on threads: DynamoDB requests
    are served one at a time. Other services' requests (an SQS long poll) are not held up."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith("DynamoDB"):
            with self.lock:
                return list(self.app(environ, start_response))
        return self.app(environ, start_response)


class _AtomicMotoServer(ThreadedMotoServer):
    def _server_entry(self) -> None:
        app = AtomicDynamoDB(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(
            self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()


class MotoServer:
    """A ThreadedMotoServer bound to a free port on loopback, DynamoDB requests atomic."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._server = _AtomicMotoServer(ip_address=HOST, port=self.port, verbose=False)
        self._running = False

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> MotoServer:
        if not self._running:
            logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per moto call otherwise
            self._server.start()
            self._running = True
        return self

    def stop(self) -> None:
        if self._running:
            self._server.stop()
            self._running = False


@contextmanager
def running_moto(port: int | None = None) -> Iterator[MotoServer]:
    server = MotoServer(port).start()
    try:
        yield server
    finally:
        server.stop()
