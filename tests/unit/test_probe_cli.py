"""The CLI on a host without a GPU: keygen, inventory --json, bench --json (CliRunner, no network)."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

import benchmark_probe.inventory as inventory_module
from benchmark_probe.cli import app
from benchmark_probe.client import ServiceClient
from benchmark_probe.nvml_double import CudaTestDouble, NvmlTestDouble
from gpuproof.protocol.keys import SigningKey

runner = CliRunner()


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the test machine has, the probe sees a host whose NVML library is missing."""
    monkeypatch.setattr(
        inventory_module, "_load_pynvml", lambda: (NvmlTestDouble(library_missing=True), None)
    )


@pytest.fixture
def eight_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = NvmlTestDouble.with_gpus(8)
    monkeypatch.setattr(inventory_module, "_load_pynvml", lambda: (nvml, None))
    monkeypatch.setattr(inventory_module, "_default_cuda", lambda: CudaTestDouble.agreeing_with(nvml))


def test_keygen_writes_0600_and_refuses_to_overwrite(tmp_path: Path) -> None:
    key = tmp_path / "conf" / "machine.key"
    first = runner.invoke(app, ["keygen", "--key", str(key), "--json"])
    assert first.exit_code == 0, first.output
    out = json.loads(first.stdout)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert SigningKey.load(key).public_hex == out["machine_id"]
    before = key.read_bytes()
    second = runner.invoke(app, ["keygen", "--key", str(key), "--json"])
    assert second.exit_code == 4  # a key problem (docs/cli.md)
    assert "refusing to overwrite" in json.loads(second.stdout)["error"]
    assert key.read_bytes() == before


def test_keygen_sr25519_reuses_dbcs_scheme(tmp_path: Path) -> None:
    path = tmp_path / "k"
    result = runner.invoke(app, ["keygen", "--key", str(path), "--scheme", "sr25519", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["scheme"] == "sr25519" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("sr25519:")
    key = SigningKey.load(path)
    assert key.scheme == "sr25519" and key.public_hex == out["machine_id"]


def test_inventory_json_without_gpu_says_so(no_gpu: None) -> None:
    result = runner.invoke(app, ["inventory", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    inv = out["inventory"]
    assert inv["backend"] == "cpu" and inv["gpus"] == []
    assert inv["notes"][0].startswith("no NVIDIA GPU found (NVML library not loadable:")
    assert inv["host"]["cpu_cores"] >= 1 and inv["host"]["ram_bytes"] > 0
    assert out["dbc_upload_info"]["gpu_num"] == 0
    assert out["dbc_upload_info"]["cpu_core_num"] == inv["host"]["cpu_cores"]
    assert "ld_preload" in out["integrity"]


def test_inventory_json_with_eight_gpus(eight_gpus: None) -> None:
    out = json.loads(runner.invoke(app, ["inventory", "--json"]).stdout)
    assert len(out["inventory"]["gpus"]) == 8
    assert out["dbc_upload_info"]["gpu_type"] == "H10080GBHBM3"
    assert out["dbc_upload_info"]["gpu_num"] == 8


def test_inventory_table_for_people(eight_gpus: None) -> None:
    result = runner.invoke(app, ["inventory"])
    assert result.exit_code == 0, result.output
    assert "H100" in result.stdout and "Integrity signals" in result.stdout


def test_bench_json_on_the_cpu(no_gpu: None) -> None:
    result = runner.invoke(app, ["bench", "--json", "--quick"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["backend"] == "cpu"
    assert out["notes"][0].startswith("no NVIDIA GPU found")
    assert [b["name"] for b in out["benchmarks"]] == ["gemm_fp32", "gemm_fp64", "copy_host"]
    assert all(b["verified"] and b["median"] > 0 for b in out["benchmarks"])


def test_bench_table_for_people(no_gpu: None) -> None:
    result = runner.invoke(app, ["bench", "--quick"])
    assert result.exit_code == 0, result.output
    assert "gemm_fp64" in result.stdout


def test_submit_without_a_key_explains_how_to_make_one(tmp_path: Path) -> None:
    args = [
        "submit",
        "--api",
        "https://x",
        "--owner",
        "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY",
        "--region",
        "europe",
        "--key",
        str(tmp_path / "nokey"),
    ]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 4
    assert "benchmark-probe keygen" in json.loads(result.stdout)["error"]


def _submit_args(key: Path) -> list[str]:
    owner = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
    return ["submit", "--api", "https://api.example/prod", "--owner", owner, "--region", "europe",
            "--key", str(key), "--quick", "--yes", "--json"]  # fmt: skip


def test_submit_refused_prints_code_and_reasons(
    no_gpu: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import benchmark_probe.cli as cli
    from tests.unit.probe_service_double import FakeResponse, FakeService

    class Refusing(FakeService):
        def route(self, method: str, path: str, body: object, keyid: str) -> FakeResponse:
            return FakeResponse(
                403, {"code": "owner_mismatch", "message": "no", "reasons": ["bond signature"]}
            )

    monkeypatch.setattr(cli, "ServiceClient", lambda api, key: ServiceClient(api, key, transport=Refusing()))
    key = tmp_path / "machine.key"
    runner.invoke(app, ["keygen", "--key", str(key)])
    result = runner.invoke(app, _submit_args(key))
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert (out["status"], out["code"], out["reasons"]) == (403, "owner_mismatch", ["bond signature"])


def test_submit_refuses_an_owner_with_a_broken_checksum(no_gpu: None, tmp_path: Path) -> None:
    key = tmp_path / "machine.key"
    runner.invoke(app, ["keygen", "--key", str(key)])
    args = _submit_args(key)
    owner_at = args.index("--owner") + 1
    args[owner_at] = args[owner_at][:-1] + "R"  # base58, right length, wrong checksum
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "checksum" in result.output


def test_submit_naming_another_owner_exits_non_zero(
    no_gpu: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import benchmark_probe.cli as cli
    from tests.unit.probe_service_double import FakeService

    key = tmp_path / "machine.key"
    runner.invoke(app, ["keygen", "--key", str(key)])
    machine_id = SigningKey.load(key).public_hex
    bob = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"
    service = FakeService(registered={machine_id}, owners={machine_id: bob})
    monkeypatch.setattr(cli, "ServiceClient", lambda api, k: ServiceClient(api, k, transport=service))
    result = runner.invoke(app, _submit_args(key))
    assert result.exit_code == 1, result.output
    out = json.loads(result.stdout)
    assert (out["status"], out["code"]) == (409, "machine_owner_mismatch")
    assert bob in out["error"]


ALICE_SEED = "0xe5be9a5092b81bca64be81d212e7f2f9eba183bb7a90954f7b76361f6edb5c0a"  # subkey's //Alice
ALICE_PUBLIC = "d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d"


def test_keygen_imports_an_existing_sr25519_node_key_from_stdin(tmp_path: Path) -> None:
    path = tmp_path / "machine.key"
    args = ["keygen", "--key", str(path), "--scheme", "sr25519", "--import-seed", "--json"]
    result = runner.invoke(app, [*args, "--expect-machine-id", "0x" + ALICE_PUBLIC.upper()], input=ALICE_SEED)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "machine_id": ALICE_PUBLIC,
        "public_key": ALICE_PUBLIC,
        "address": "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY",
        "key_path": str(path),
        "scheme": "sr25519",
        "imported": True,
        "source": "seed",
        "mnemonic_shown": False,
    }
    assert ALICE_SEED[2:] not in result.output  # the secret is never echoed
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert SigningKey.load(path).public_hex == ALICE_PUBLIC


@pytest.mark.parametrize(
    ("seed", "expect", "error", "code"),
    [
        ("0x1234", None, "32 bytes of hex", 2),
        ("zz" * 32, None, "32 bytes of hex", 2),
        (ALICE_SEED, "ab" * 32, f"machine_id is {ALICE_PUBLIC}", 4),
    ],
)
def test_keygen_import_refuses_bad_seeds_and_writes_nothing(
    tmp_path: Path, seed: str, expect: str | None, error: str, code: int
) -> None:
    path = tmp_path / "machine.key"
    args = ["keygen", "--key", str(path), "--scheme", "sr25519", "--import-seed", "--json"]
    result = runner.invoke(app, [*args, *(["--expect-machine-id", expect] if expect else [])], input=seed)
    assert result.exit_code == code
    assert error in json.loads(result.stdout)["error"]
    assert seed.removeprefix("0x") not in result.output
    assert not path.exists()


def test_prepare_without_a_gpu_says_there_is_nothing_to_build(no_gpu: None) -> None:
    run = runner.invoke(app, ["prepare", "--json"])
    assert run.exit_code == 0, run.output
    doc = json.loads(run.stdout)
    assert doc["gpus"] == [] and doc["note"] == "no GPU found: nothing to build"


@pytest.mark.skipif(shutil.which("g++") is None, reason="the CUDA double builds kernels with g++")
def test_prepare_builds_the_proofs_and_the_capacity_phases_kernels_on_every_gpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`benchmark-probe prepare`: the throughput executor warmed and every capacity lane (kernels
    built, cuBLAS on its stream) on both GPUs of the double, as the first submit would."""
    from gpuproof.protocol.capacity.cupy_prover import HOST_LANES
    from tests.unit.gpu_host_double import patch_gpu_host

    cp = patch_gpu_host(monkeypatch, 2)
    run = runner.invoke(app, ["prepare", "--json"])
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout)["gpus"] == [0, 1]
    streams = {(e[9], e[10]) for e in cp.log if e[0] == "gemm"}
    assert {device for device, _stream in streams} == {0, 1}
    assert len(streams) >= 2 * HOST_LANES  # the capacity lanes' own streams, beside the default one
