"""Client, submit flow and agent against an in-process fake service that checks every signature."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import pytest

from benchmark_probe.agent import run_agent
from benchmark_probe.backends.cpu import CpuBackend
from benchmark_probe.bench import BenchPlan, run_benchmarks
from benchmark_probe.client import ServiceClient, ServiceError
from benchmark_probe.inventory import collect_inventory
from benchmark_probe.nvml_double import CudaTestDouble, NvmlTestDouble, fixed_host
from benchmark_probe.proof import ProofRunner, prove
from benchmark_probe.report import Challenge
from benchmark_probe.submit import submit
from benchmark_probe.telemetry import Telemetry
from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.machine import Region
from gpuproof.protocol.proof import NumpyExecutor, ProofParams, derive_params
from gpuproof.protocol.proof.executor import ChainCommit
from gpuproof.protocol.report import Integrity
from tests.unit.probe_service_double import FakeResponse, FakeService

OWNER = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"


KEY = SigningKey.from_seed(b"\x07" * 32)


def _submit(service: FakeService, api: str = "https://api.example/prod", proof: Any = None) -> Any:
    nvml = NvmlTestDouble.with_gpus(1)
    inventory = collect_inventory(nvml, CudaTestDouble.agreeing_with(nvml), fixed_host())
    return submit(
        ServiceClient(api, KEY, transport=service),
        KEY,
        OWNER,
        Region.europe,
        inventory,
        Integrity(),
        lambda: run_benchmarks(CpuBackend(), BenchPlan.quick()),
        proof,
    )


def test_submit_registers_challenges_reports_and_reads_state() -> None:
    service = FakeService()
    outcome = _submit(service)
    mid = KEY.public_hex
    assert service.paths == [
        "POST /prod/machines",
        f"POST /prod/machines/{mid}/challenges",
        f"POST /prod/machines/{mid}/reports",
        f"GET /prod/machines/{mid}",
    ]
    assert outcome.registration == "registered"
    assert outcome.challenge_id == "ch-9"
    assert outcome.machine == {"machine_id": mid, "state": "CommitteeVerifying"}
    [report] = service.reports
    assert report.report.challenge_nonce == "7f" * 32
    assert report.report.inventory.gpus[0].name == "NVIDIA H100 80GB HBM3"


def test_the_proof_executor_is_prepared_before_the_challenge_is_taken() -> None:
    """GPU context, cuBLAS and kernel builds must not fall inside the service-timed proof window."""
    service = FakeService()
    prepared: list[tuple[list[int], list[str]]] = []

    class Recording(NumpyExecutor):
        def prepare(self, gpu_indices: Sequence[int]) -> None:
            prepared.append((list(gpu_indices), list(service.paths)))

    _submit(service, proof=ProofRunner(KEY, lambda _inventory: Recording()))
    [(gpus, before)] = prepared
    assert gpus == [0] and not [p for p in before if p.endswith("/challenges")]


def test_registration_integrity_and_the_gpus_preparation_run_side_by_side() -> None:
    """The preparation waits here until the registration request was sent and the integrity signals
    were collected: run one after another, they would never be (the wait would time out)."""
    registered, collected = threading.Event(), threading.Event()
    seen: list[tuple[bool, bool]] = []

    class Service(FakeService):
        def request(self, method: str, url: str, **kwargs: Any) -> Any:
            registered.set()
            return super().request(method, url, **kwargs)

    def integrity() -> Integrity:
        collected.set()
        return Integrity()

    class Waiting(NumpyExecutor):
        def prepare(self, gpu_indices: Sequence[int]) -> None:
            seen.append((registered.wait(10), collected.wait(10)))

    nvml = NvmlTestDouble.with_gpus(1)
    inventory = collect_inventory(nvml, CudaTestDouble.agreeing_with(nvml), fixed_host())
    outcome = submit(
        ServiceClient("https://api.example/prod", KEY, transport=Service()),
        KEY,
        OWNER,
        Region.europe,
        inventory,
        integrity,
        lambda: run_benchmarks(CpuBackend(), BenchPlan.quick()),
        ProofRunner(KEY, lambda _inventory: Waiting()),
    )
    assert seen == [(True, True)] and outcome.registration == "registered"


def test_submit_again_is_fine_when_already_registered() -> None:
    service = FakeService(registered={KEY.public_hex})
    assert _submit(service).registration == "already registered"


def test_submit_naming_another_owner_for_a_registered_machine_stops() -> None:
    service = FakeService(
        registered={KEY.public_hex},
        owners={KEY.public_hex: "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"},
    )
    with pytest.raises(ServiceError, match="machine_owner_mismatch") as info:
        _submit(service)
    assert info.value.status == 409
    assert service.paths == ["POST /prod/machines"]  # no challenge taken, no report sent


def test_a_non_json_error_is_still_a_clear_error() -> None:
    class Gateway(FakeService):
        def route(self, method: str, path: str, body: Any, keyid: str) -> FakeResponse:
            return FakeResponse(502, "Bad Gateway")

    client = ServiceClient("https://api.example", KEY, transport=Gateway())
    client.sleep = lambda _s: (
        None
    )  # a read is retried on 502: the backoff waits between tries (4-7 s) skipped
    with pytest.raises(ServiceError, match="HTTP 502 http_error"):
        client.machine(KEY.public_hex)


def test_error_body_is_parsed() -> None:
    class Refusing(FakeService):
        def route(self, method: str, path: str, body: Any, keyid: str) -> FakeResponse:
            return FakeResponse(
                422,
                {
                    "code": "report_rejected",
                    "message": "bad report",
                    "reasons": [{"code": "nonce_mismatch", "message": "old nonce"}, "late"],
                },
            )

    client = ServiceClient("https://api.example", KEY, transport=Refusing())
    with pytest.raises(ServiceError) as info:
        client.machine(KEY.public_hex)
    err = info.value
    assert (err.status, err.code) == (422, "report_rejected")
    assert err.reasons == [{"code": "nonce_mismatch", "message": "old nonce"}, "late"]
    assert "HTTP 422 report_rejected: bad report (nonce_mismatch: old nonce; late)" in str(err)


def test_agent_keeps_going_when_heartbeats_are_not_served_yet() -> None:
    service = FakeService(heartbeat_status=501)
    client = ServiceClient("https://api.example", KEY, transport=service)
    telemetry = Telemetry(nvml=NvmlTestDouble.with_gpus(8))
    logs: list[str] = []
    sleeps: list[float] = []

    class Stop(Exception):
        pass

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 3:
            raise Stop

    with pytest.raises(Stop):
        run_agent(
            client,
            KEY.public_hex,
            lambda: telemetry.read(KEY.public_hex),
            interval_s=5,
            once=False,
            log=logs.append,
            sleep=sleep,
        )
    assert len(service.paths) == 3
    assert all(p.endswith("/heartbeats") for p in service.paths)
    assert logs == ["heartbeat endpoint not served yet (HTTP 501); continuing"] * 3
    assert all(0 <= s <= 5 for s in sleeps)


def test_agent_once_counts_an_accepted_beat() -> None:
    service = FakeService(heartbeat_status=202)
    client = ServiceClient("https://api.example", KEY, transport=service)
    stats = run_agent(client, KEY.public_hex, lambda: {"x": 1}, interval_s=1, once=True, log=print)
    assert (stats.sent, stats.accepted) == (1, 1)


def test_agent_answers_a_reverification_request() -> None:
    service = FakeService(heartbeat_status=200, heartbeat_ack={"state": "published", "reverify": True})
    client = ServiceClient("https://api.example", KEY, transport=service)
    answered: list[int] = []
    stats = run_agent(
        client,
        KEY.public_hex,
        lambda: {"x": 1},
        interval_s=1,
        once=True,
        log=print,
        on_reverify=lambda: answered.append(1),
    )
    assert answered == [1] and stats.reverified == 1
    service.heartbeat_ack = {"state": "published", "reverify": False}
    run_agent(
        client,
        KEY.public_hex,
        lambda: {"x": 1},
        interval_s=1,
        once=True,
        log=print,
        on_reverify=lambda: answered.append(1),
    )
    assert answered == [1]


def test_telemetry_per_gpu_and_without_nvml() -> None:
    beat = Telemetry(nvml=NvmlTestDouble.with_gpus(8)).read("m")
    assert beat["backend"] == "nvml" and len(beat["gpus"]) == 8
    gpu = beat["gpus"][0]
    assert gpu["power_w"] == 70.0 and gpu["temperature_c"] == 35 and gpu["processes"] == []
    assert {"load_average", "memory_used_bytes", "memory_total_bytes"} <= beat["host"].keys()
    cpu = Telemetry(nvml=NvmlTestDouble(library_missing=True)).read("m")
    assert cpu["backend"] == "cpu" and cpu["gpus"] == []
    assert "NVML library not loadable" in cpu["note"]


def test_every_gpu_proves_at_once() -> None:
    """The service holds a multi-GPU host to its slowest GPU's deadline: chains must run in parallel."""
    params = [derive_params(None, cpu=True, gpu_index=i, n=16, d=16, steps=1) for i in range(3)]

    class AllAtOnce(NumpyExecutor):
        barrier = threading.Barrier(3, timeout=10)  # a serial prover would never get 3 chains waiting

        def commit(self, seed: bytes, b_seed: bytes, params: ProofParams, keep_level: int) -> ChainCommit:
            self.barrier.wait()
            return super().commit(seed, b_seed, params, keep_level)

    class Committed(Exception):
        pass

    class StopAtCommitment:
        def submit_commitment(self, *_args: Any) -> Any:
            raise Committed

    challenge = Challenge("ch-1", "7f" * 32, params={"proof": [p.model_dump(mode="json") for p in params]})
    with pytest.raises(Committed):
        prove(StopAtCommitment(), KEY, challenge, AllAtOnce())  # type: ignore[arg-type]
