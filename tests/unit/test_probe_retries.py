"""The probe retries what is safe to retry, signed afresh each time, with backoff and a summary line.

A scripted transport in front of the in-process service double fails the first tries of a route
the way a network and a loaded API do: a reset connection (the request may have arrived), a
refused connection (it never left), 503 and 429. Sleeping is recorded, never done.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests
from urllib3.exceptions import NewConnectionError

from benchmark_probe.backends.cpu import CpuBackend
from benchmark_probe.bench import BenchPlan, run_benchmarks
from benchmark_probe.client import ServiceClient, ServiceError
from benchmark_probe.inventory import collect_inventory
from benchmark_probe.nvml_double import CudaTestDouble, NvmlTestDouble, fixed_host
from benchmark_probe.submit import submit
from gpuproof.protocol.client import RETRY_SAFE, RetryPolicy, never_sent
from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.machine import Region
from gpuproof.protocol.report import Integrity
from tests.unit.probe_service_double import FakeResponse, FakeService

OWNER = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"

KEY = SigningKey.from_seed(b"\x07" * 32)
Failure = Callable[[], Any]


def reset() -> Any:
    raise requests.ConnectionError(
        requests.packages.urllib3.exceptions.ProtocolError(  # type: ignore[attr-defined]
            "Connection aborted.", ConnectionResetError(104, "Connection reset by peer")
        )
    )


def refused() -> Any:
    cause = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")  # type: ignore[arg-type]
    raise requests.ConnectionError(cause)


def status(code: int, retry_after: str | None = None) -> Failure:
    def answer() -> Any:
        response = FakeResponse(code, {"code": "busy", "message": "try again"})
        response.headers = {"retry-after": retry_after} if retry_after else {}  # type: ignore[attr-defined]
        return response

    return answer


class Flaky:
    """Fails the first requests of a route as scripted, then lets the service answer."""

    def __init__(self, service: FakeService, script: dict[str, list[Failure]]) -> None:
        self.service = service
        self.script = {route: list(failures) for route, failures in script.items()}
        self.signatures: list[str] = []

    def request(self, method: str, url: str, *, data: bytes, headers: dict[str, str], timeout: float) -> Any:
        self.signatures.append(headers["signature"])
        route = f"{method} {requests.utils.urlparse(url).path.removeprefix('/prod')}"
        pending = self.script.get(route)
        if pending:
            return pending.pop(0)()
        return self.service.request(method, url, data=data, headers=headers, timeout=timeout)


def client(transport: Flaky) -> tuple[ServiceClient, list[float]]:
    c = ServiceClient("https://api.example/prod", KEY, transport=transport)
    slept: list[float] = []
    c.sleep = slept.append
    return c, slept


def test_registration_survives_a_reset_connection_503_and_429_signed_afresh_each_time() -> None:
    service = FakeService()
    flaky = Flaky(service, {"POST /machines": [reset, status(503), status(429, retry_after="2")]})
    c, slept = client(flaky)
    outcome = _submit_with(c)
    assert outcome.registration == "registered"
    assert service.paths.count("POST /prod/machines") == 1  # the service saw the fourth try
    assert len(slept) == 3 and slept[2] == 2.0  # backoff between tries; Retry-After honoured
    assert len(set(flaky.signatures)) == len(flaky.signatures), "every try is signed afresh (new nonce)"
    summary = c.retry_summary()
    assert summary is not None and summary.startswith("retried 3 time(s)")
    assert (
        "POST /machines x1 (ConnectionError)" in summary and "HTTP 503" in summary and "HTTP 429" in summary
    )


def test_a_report_is_not_resent_after_a_reset_but_is_after_a_refused_connection() -> None:
    mid = KEY.public_hex
    c, slept = client(Flaky(FakeService(), {f"POST /machines/{mid}/reports": [reset]}))
    with pytest.raises(requests.ConnectionError):
        _submit_with(c)  # it may have arrived: the probe must not send it twice
    assert slept == []

    service = FakeService()
    c, slept = client(Flaky(service, {f"POST /machines/{mid}/reports": [refused, refused]}))
    outcome = _submit_with(c)
    assert len(service.reports) == 1 and len(slept) == 2
    assert outcome.report_response is not None


def test_a_final_refusal_is_not_retried_and_retries_stop_at_the_policy() -> None:
    c, slept = client(Flaky(FakeService(), {"POST /machines": [status(400)]}))
    with pytest.raises(ServiceError) as refused_once:
        _submit_with(c)
    assert refused_once.value.status == 400 and slept == []

    c, slept = client(Flaky(FakeService(), {"POST /machines": [status(503)] * 10}))
    with pytest.raises(ServiceError) as gave_up:
        _submit_with(c)
    assert gave_up.value.status == 503 and len(slept) == RETRY_SAFE.attempts - 1


def test_backoff_grows_to_its_ceiling() -> None:
    policy = RetryPolicy(first_delay_s=1.0, max_delay_s=8.0)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        d = policy.delay(attempt)
        assert ceiling / 2 <= d <= ceiling
    assert policy.delay(1, retry_after=5.0) == 5.0


def test_what_never_left_is_told_from_what_may_have_arrived() -> None:
    for make, unsent in [(refused, True), (reset, False)]:
        with pytest.raises(requests.ConnectionError) as raised:
            make()
        assert never_sent(raised.value) is unsent
    assert never_sent(requests.ConnectTimeout()) is True
    assert never_sent(requests.ReadTimeout()) is False


def _submit_with(c: ServiceClient) -> Any:
    nvml = NvmlTestDouble.with_gpus(1)
    inventory = collect_inventory(nvml, CudaTestDouble.agreeing_with(nvml), fixed_host())
    return submit(
        c,
        KEY,
        OWNER,
        Region.europe,
        inventory,
        Integrity(),
        lambda: run_benchmarks(CpuBackend(), BenchPlan.quick()),
        None,
    )
