"""Reference measurements beside the probe's, on the same GPU, same sizes and dtypes, same method.

    python scripts/gpu_check.py reference --bench OUT/bench_run1.json --out OUT/reference.json
    python scripts/gpu_check.py compare --bench OUT/bench_run*.json --reference OUT/reference.json
    python scripts/gpu_check.py proof --inventory OUT/inventory.json --out OUT/proof.json
    python scripts/gpu_check.py capacity --out OUT/capacity.json

References: torch.matmul (and torch._int_mm for int8), cupy.matmul (fp32, fp16), a plain device
copy (torch copy_, cupy.copyto) and pinned host copies (torch copy_ non_blocking). Method as the
probe: warm-ups, CUDA events around the measured call only, L2 flushed between GEMMs, median.
Installs nothing; every reference that cannot run is recorded with its error, not invented.
One difference stays: torch.matmul and cupy.matmul write C in the input precision (fp16/bf16) where
the probe's gemmEx writes fp32 C, so they move less memory and probe ÷ reference errs low (by an
estimated few percent at n = 8192), never high.

`proof`: a full proof of throughput at the parameters the service would send for the GPUs the
inventory found (all GPUs in parallel, CuPy executor), opened at drawn pairs and verified with the
service's own code; beside it, the same number of bare fp16 GEMMs of the same shapes (the GEMM-only
floor) so the commitment's overhead is measured, not estimated. With `--beside-host-bytes B` the
proof runs beside what a probe's first run runs beside it (`_beside_load`: the capacity source's
NVRTC build, fresh, and host RAM first-touched at the probe's lower priority, a B-byte buffer
touched, given back and touched again until the commitment), so its time can be set beside the
proof's alone: the background work must not take the honest host's margin (docs/decisions.md).

`capacity`: the capacity phase (docs/protocol.md §17) run for real by the GPU executor the probe runs
(`CupyCapacityProver`) on GPU 0: a GPU target filling `--fraction` (0.90) of the device's free
memory (d = 1024, the service's chunk, spots and walks) and a host RAM target of `--host-bytes`
(8 GiB, filled out of core from the GPU), the phase driven through the service's own
`CapacitySession` on this machine's clock: fill time, every read round's latency (scan rounds of
the GPU; sample rounds of host RAM), a GPU sample round of the service's 2^22 rows, the openings
(the fill recomputed) and `verify_capacity`'s verdict (proof checks apart from deadlines, which
use the reference rates and are the calibration's subject), beside a plain device-to-device copy
of 512 MiB taken before the fill. `--double` runs the same code on the CUDA test double at tiny
sizes (no GPU; figures meaningless), as the unit test does.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

WARMUPS, REPEATS = 3, 10
GEMM_KINDS = ("fp32", "tf32", "fp16", "bf16", "int8")


def _stats(rates: list[float]) -> dict[str, float]:
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates), "repeats": len(rates)}


def _probe_sizes(bench: dict[str, Any]) -> tuple[int, int, int]:
    """GEMM n, device copy bytes and host copy bytes the probe used (read from its own JSON)."""
    by_name = {b["name"]: b for b in bench["benchmarks"] if b.get("method")}
    n = by_name.get("gemm_fp16", {}).get("method", {}).get("n", bench["plan"]["gemm_n"])
    d2d = by_name.get("copy_d2d", {}).get("method", {}).get("bytes", bench["plan"]["copy_bytes"])
    h2d = by_name.get("copy_h2d_pinned", {}).get("method", {}).get("bytes", bench["plan"]["host_copy_bytes"])
    return int(n), int(d2d), int(h2d)


# -- torch -----------------------------------------------------------------------------------------
def _torch_timer(torch: Any, fn: Callable[[], Any], before: Callable[[], Any]) -> list[float]:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(WARMUPS):
        before()
        fn()
    seconds = []
    for _ in range(REPEATS):
        before()
        start.record()
        fn()
        end.record()
        end.synchronize()
        seconds.append(start.elapsed_time(end) / 1e3)
    return seconds


def torch_gemm(torch: Any, kind: str, n: int, flush: Any) -> dict[str, Any]:
    torch.backends.cuda.matmul.allow_tf32 = kind == "tf32"
    gen = torch.Generator(device="cuda").manual_seed(1)
    a8 = torch.randint(-31, 32, (n, n), device="cuda", dtype=torch.int8, generator=gen)
    b8 = torch.randint(-31, 32, (n, n), device="cuda", dtype=torch.int8, generator=gen)
    if kind == "int8":
        b = b8.t().contiguous().t()  # column-major B: the layout _int_mm's cuBLASLt path wants

        def fn() -> Any:
            return torch._int_mm(a8, b)
    else:
        dtypes = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
        dtype = dtypes[kind]
        a, b = a8.to(dtype), b8.to(dtype)

        def fn() -> Any:
            return torch.matmul(a, b)

    seconds = _torch_timer(torch, fn, flush.zero_)
    return {"library": "torch", "n": n, **_stats([2 * n**3 / s / 1e12 for s in seconds])}


def torch_copies(torch: Any, d2d_bytes: int, host_bytes: int) -> dict[str, Any]:
    src = torch.randint(0, 255, (d2d_bytes,), device="cuda", dtype=torch.uint8)
    dst = torch.empty_like(src)
    out = {"copy_d2d": _copy_stats(d2d_bytes, _torch_timer(torch, lambda: dst.copy_(src), lambda: None))}
    host = torch.empty(host_bytes, dtype=torch.uint8).pin_memory()
    dev = torch.empty(host_bytes, dtype=torch.uint8, device="cuda")
    h2d = _torch_timer(torch, lambda: dev.copy_(host, non_blocking=True), lambda: None)
    d2h = _torch_timer(torch, lambda: host.copy_(dev, non_blocking=True), lambda: None)
    out["copy_h2d_pinned"] = _copy_stats(host_bytes, h2d)
    out["copy_d2h_pinned"] = _copy_stats(host_bytes, d2h)
    return {k: {"library": "torch", **v} for k, v in out.items()}


def _copy_stats(nbytes: int, seconds: list[float]) -> dict[str, Any]:
    return {"bytes": nbytes, **_stats([nbytes / s / 1e9 for s in seconds])}


def torch_reference(ordinal: int, n: int, d2d: int, host: int) -> dict[str, Any]:
    import torch

    torch.cuda.set_device(ordinal)
    l2 = torch.cuda.get_device_properties(ordinal).L2_cache_size
    flush = torch.empty(max(2 * l2, 8 << 20), dtype=torch.uint8, device="cuda")
    results: dict[str, Any] = {}
    for kind in GEMM_KINDS:
        results[f"gemm_{kind}"] = _guard(lambda kind=kind: torch_gemm(torch, kind, n, flush))
    copies = _guard(lambda: torch_copies(torch, d2d, host))
    names = ("copy_d2d", "copy_h2d_pinned", "copy_d2h_pinned")
    results.update(copies if "error" not in copies else dict.fromkeys(names, copies))
    torch.cuda.empty_cache()
    return results


# -- cupy ------------------------------------------------------------------------------------------
def cupy_reference(ordinal: int, n: int, d2d: int) -> dict[str, Any]:
    import cupy as cp

    results: dict[str, Any] = {}
    with cp.cuda.Device(ordinal):
        l2 = cp.cuda.runtime.getDeviceProperties(ordinal)["l2CacheSize"]
        flush = cp.empty(max(2 * l2, 8 << 20), dtype=cp.uint8)
        for kind, dtype in (("fp32", cp.float32), ("fp16", cp.float16)):
            results[f"gemm_{kind}"] = _guard(lambda dtype=dtype: _cupy_gemm(cp, dtype, n, flush))
        results["copy_d2d"] = _guard(lambda: _cupy_copy(cp, d2d))
        cp.get_default_memory_pool().free_all_blocks()
    return results


def _cupy_timer(cp: Any, fn: Callable[[], Any], before: Callable[[], Any]) -> list[float]:
    start, end = cp.cuda.Event(), cp.cuda.Event()
    for _ in range(WARMUPS):
        before()
        fn()
    seconds = []
    for _ in range(REPEATS):
        before()
        start.record()
        fn()
        end.record()
        end.synchronize()
        seconds.append(cp.cuda.get_elapsed_time(start, end) / 1e3)
    return seconds


def _cupy_gemm(cp: Any, dtype: Any, n: int, flush: Any) -> dict[str, Any]:
    rs = cp.random.RandomState(1)
    a = rs.randint(-31, 32, size=(n, n), dtype=cp.int32).astype(dtype)
    b = rs.randint(-31, 32, size=(n, n), dtype=cp.int32).astype(dtype)
    c = cp.empty((n, n), dtype=dtype)
    seconds = _cupy_timer(cp, lambda: cp.matmul(a, b, out=c), lambda: flush.fill(0))
    return {"library": "cupy", "n": n, **_stats([2 * n**3 / s / 1e12 for s in seconds])}


def _cupy_copy(cp: Any, nbytes: int) -> dict[str, Any]:
    src = cp.ones(nbytes, dtype=cp.uint8)
    dst = cp.empty_like(src)
    seconds = _cupy_timer(cp, lambda: cp.copyto(dst, src), lambda: None)
    return {"library": "cupy", **_copy_stats(nbytes, seconds)}


def _guard(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return fn()
    except Exception as exc:  # a reference that cannot run is reported, never invented
        return {"error": f"{type(exc).__name__}: {exc}"}


# -- commands --------------------------------------------------------------------------------------
def reference(bench_path: Path, out_path: Path) -> None:
    bench = json.loads(bench_path.read_text())
    n, d2d, host = _probe_sizes(bench)
    devices = sorted({b["device"] for b in bench["benchmarks"] if b["device"].startswith("gpu")})
    out: dict[str, Any] = {"n": n, "copy_bytes": d2d, "host_copy_bytes": host, "devices": {}}
    for label in devices:
        ordinal = int(label[3:])  # CUDA_DEVICE_ORDER=PCI_BUS_ID: CUDA ordinal == NVML index
        out["devices"][label] = {
            "torch": _guard(lambda o=ordinal: torch_reference(o, n, d2d, host)),
            "cupy": _guard(lambda o=ordinal: cupy_reference(o, n, d2d)),
        }
        print(f"reference measured on {label}", file=sys.stderr)
    out_path.write_text(json.dumps(out, indent=2, sort_keys=True))


def _best_reference(refs: dict[str, Any], name: str) -> tuple[float | None, str]:
    best: tuple[float | None, str] = (None, "—")
    for library in ("torch", "cupy"):
        entry = refs.get(library, {}).get(name, {})
        median = entry.get("median") if isinstance(entry, dict) else None
        if median and (best[0] is None or median > best[0]):
            best = (median, library)
    return best


def compare(bench_paths: list[Path], ref_path: Path, out_path: Path | None) -> None:
    runs = [json.loads(p.read_text()) for p in bench_paths]
    ref = json.loads(ref_path.read_text())
    rows = []
    for result in runs[0]["benchmarks"]:
        key = (result["device"], result["name"])
        medians = [b["median"] for run in runs for b in run["benchmarks"] if (b["device"], b["name"]) == key]
        steady = len(medians) > 1 and all(medians)
        cv = statistics.pstdev(medians) / statistics.mean(medians) if steady else None
        best, library = _best_reference(ref["devices"].get(result["device"], {}), result["name"])
        ratio = result["median"] / best if best and result["verified"] else None
        rows.append(
            {
                "device": key[0],
                "name": key[1],
                "unit": result["unit"],
                "probe": result["median"],
                "verified": result["verified"],
                "reference": best,
                "reference_library": library,
                "ratio": ratio,
                "cv_across_runs": cv,
                "runs": len(medians),
            }
        )
    header = f"{'device':<6} {'benchmark':<17} {'unit':<6} {'probe':>10} {'reference':>10} {'lib':<6} "
    print(header + f"{'ratio':>7} {'CV runs':>8}  verified")
    for r in rows:
        ref_text = f"{r['reference']:.2f}" if r["reference"] else "—"
        ratio = f"{r['ratio']:.3f}" if r["ratio"] else "—"
        cv = f"{100 * r['cv_across_runs']:.2f}%" if r["cv_across_runs"] is not None else "—"
        print(
            f"{r['device']:<6} {r['name']:<17} {r['unit']:<6} {r['probe']:>10.2f} {ref_text:>10} "
            f"{r['reference_library']:<6} {ratio:>7} {cv:>8}  {r['verified']}"
        )
    if out_path is not None:
        out_path.write_text(json.dumps(rows, indent=2))


def _gemm_floor(cp: Any, executor: Any, n: int, d: int, steps: int) -> dict[str, Any]:
    """`steps` bare GEMMs of the proof's shapes (n x d by d x d, int8 in, int32 out) between CUDA events."""
    a8 = cp.ones((n, d), dtype=cp.int8)
    b8 = cp.ones((d, d), dtype=cp.int8)
    c32 = cp.empty((n, d), dtype=cp.int32)
    executor._gemm(a8, b8, c32)  # warm-up: cuBLAS picks its kernel
    start, end = cp.cuda.Event(), cp.cuda.Event()
    start.record()
    for _ in range(steps):
        executor._gemm(a8, b8, c32)
    end.record()
    end.synchronize()
    seconds = cp.cuda.get_elapsed_time(start, end) / 1e3
    return {"seconds": seconds, "tops": 2 * n * d * d * steps / seconds / 1e12}


def _beside_load(cp: Any, stop: Any, host_bytes: int) -> dict[str, Any]:
    """Until `stop` is set: the capacity source built once by NVRTC on GPU 0 (a unique macro keeps
    CuPy's kernel cache from answering) on one thread, and on others host RAM's first touch as the
    probe runs it beside the throughput proof (`cupy_prover._Touch`, 16 threads at nice + 10, 256
    MiB slices) over a `host_bytes` buffer, given back and allocated again each time it is touched.
    Returns what it did: the build's seconds, the bytes touched and their rate."""
    import secrets
    import threading
    import time

    import numpy as np

    from gpuproof.protocol.capacity.cupy_prover import MODULE_OPTIONS, TOUCH_BYTES, _Touch, lower_priority
    from gpuproof.protocol.capacity.kernels import SOURCE

    out: dict[str, Any] = {"host_bytes": host_bytes}

    def build() -> None:  # as the probe's warm-up thread builds it: at a lower priority
        lower_priority()
        t0 = time.perf_counter()
        try:
            with cp.cuda.Device(0):
                code = f"#define GPUPROOF_BESIDE_{secrets.token_hex(8)} 1\n" + SOURCE
                cp.RawModule(code=code, options=MODULE_OPTIONS).get_function("cap_pairs")
            out["build_s"] = time.perf_counter() - t0
        except Exception as exc:  # recorded, not raised: the proof's figure still counts
            out["build_error"] = f"{type(exc).__name__}: {exc}"

    builder = threading.Thread(target=build, name="beside-build")
    builder.start()
    touched, t0 = 0, time.perf_counter()
    row = 1024
    while host_bytes >= row:  # at least once, then until the commitment
        touch = _Touch(np.empty((host_bytes // row, row), dtype=np.int8), TOUCH_BYTES // row, lambda: None)
        touch.close()
        touched += touch.array.nbytes
        del touch
        if stop.is_set():
            break
    seconds = time.perf_counter() - t0
    builder.join()
    out.update(touched_bytes=touched, touch_s=seconds, touch_gbs=touched / seconds / 1e9 if seconds else None)
    return out


def proof(
    inventory_path: Path,
    out_path: Path,
    n: int | None,
    d: int | None,
    steps: int | None,
    beside_host_bytes: int = 0,
) -> None:
    import secrets
    import threading
    import time

    import cupy as cp
    import numpy as np

    from gpuproof.protocol.keys import SigningKey
    from gpuproof.protocol.proof import (
        Prover,
        SignedCommitment,
        ThroughputProof,
        check_deadline,
        derive_params,
        draw_all_pairs,
        verify_throughput,
    )
    from gpuproof.protocol.proof.cupy_executor import CupyExecutor
    from gpuproof.reference import lookup, normalise_nvml_name

    gpus = json.loads(inventory_path.read_text())["inventory"]["gpus"]
    if not gpus:
        raise SystemExit("proof: the inventory found no GPU")
    model = normalise_nvml_name(gpus[0]["name"]) or gpus[0]["name"]
    ref = lookup(model)
    rate = ref.expected_int8_tops if ref is not None else None
    if rate is None:
        raise SystemExit(f"proof: no reference int8 rate for {model!r}")
    params = [derive_params(rate, gpu_index=i, n=n, d=d, steps=steps) for i in range(len(gpus))]
    key = SigningKey.generate()
    nonce = secrets.token_bytes(32)
    executor = CupyExecutor(cupy=cp)
    executor.prepare([p.gpu_index for p in params])  # as the probe does, before the timed window
    prover = Prover(nonce, key.public_hex, "gpu-check", params, executor, parallel=True)
    stop, beside_out = threading.Event(), {}
    beside = threading.Thread(
        target=lambda: beside_out.update(_beside_load(cp, stop, beside_host_bytes)), name="beside"
    )
    if beside_host_bytes:
        beside.start()
    t0 = time.perf_counter()
    signed = SignedCommitment.sign(prover.run(), key)
    commit_s = time.perf_counter() - t0
    stop.set()
    if beside_host_bytes:
        beside.join()
    pairs = draw_all_pairs(signed, secrets.token_bytes(32), params)
    t0 = time.perf_counter()
    openings = prover.open(pairs)
    open_s = time.perf_counter() - t0
    throughput = ThroughputProof(
        commitment=signed.commitment, signature=signed.signature, pairs=pairs, openings=openings
    )
    t0 = time.perf_counter()
    reasons = verify_throughput(
        throughput,
        machine_id=key.public_hex,
        challenge_id="gpu-check",
        nonce=nonce,
        params=params,
        pairs=pairs,
        rng=np.random.default_rng(),
    )
    verify_s = time.perf_counter() - t0
    p0 = params[0]
    floor: dict[str, Any] = {"skipped": "beside a background load: see proof.json"}
    if not beside_host_bytes:
        with cp.cuda.Device(0):
            floor = _guard(lambda: _gemm_floor(cp, executor, p0.n, p0.d, p0.steps))
    elapsed = prover.elapsed
    per_gpu = [
        {
            "gpu_index": p.gpu_index,
            "elapsed_s": elapsed[p.gpu_index],
            "proof_tops": p.ops / elapsed[p.gpu_index] / 1e12 if elapsed[p.gpu_index] else None,
        }
        for p in params
    ]
    gemm_s = floor.get("seconds")
    result = {
        "model": model,
        "reference_rate_tops": rate,
        "params": [p.model_dump(mode="json") for p in params],
        "commit_wall_s": commit_s,
        "per_gpu": per_gpu,
        "deadline": [r.code for r in check_deadline(0.0, commit_s, params)] or "met",
        "open_s": open_s,
        "verify_s": verify_s,
        "verified": [f"{r.code}: {r.message}" for r in reasons] or "accepted",
        "gemm_floor_gpu0": floor,
        "overhead_vs_gemm_floor": per_gpu[0]["elapsed_s"] / gemm_s - 1 if gemm_s else None,
        "beside": beside_out or None,
    }
    out_path.write_text(json.dumps(result, indent=2))
    print(
        f"proof: {len(params)} GPU(s) {model}, n={p0.n} d={p0.d} T={p0.steps}: commit {commit_s:.2f} s "
        f"(expected {p0.expected_s} s, deadline {p0.deadline_s} s: {result['deadline']}), open {open_s:.2f} s, "
        f"verify {verify_s:.2f} s: {result['verified']}; GEMM floor {gemm_s or float('nan'):.2f} s, "
        f"overhead {100 * (result['overhead_vs_gemm_floor'] or float('nan')):.1f}%"
        + (f"; beside: {json.dumps(beside_out)}" if beside_out else "")
    )


TIMING_CODES = (
    "capacity_fill_deadline_missed",
    "capacity_round_deadline_missed",
    "capacity_host_round_deadline_missed",
    "capacity_bandwidth_deadline_missed",
)
DOUBLE_MEMORY = 1024 * 1024  # --double: one fake GPU of this much device memory (the CUDA test double)


def _capacity_model(cp: Any) -> tuple[str, float, float, bool]:
    """The card's reference int8 rate and bandwidth (for the expected figures), else placeholders."""
    from gpuproof.reference import lookup, normalise_nvml_name

    raw = cp.cuda.runtime.getDeviceProperties(0)["name"]
    name = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    model = normalise_nvml_name(name) or name
    ref = lookup(model)
    if ref is None or ref.expected_int8_tops is None or ref.mem_bw_gbs is None:
        return model, 100.0, 1000.0, False
    return model, ref.expected_int8_tops, ref.mem_bw_gbs, True


TREE_RATE_ROWS = 1 << 22  # 4 GiB of 1024-byte rows: long enough to time, small beside a fill


def _tree_rate(cp: Any, runtime: Any, gpu: Any) -> dict[str, Any]:
    """Device SHA-256 as the fill uses it: one layer's tree (`cap_subtree` leaves at height 4, then
    `cap_nodes` up to the root) over rows of the GPU target's d, timed on GPU 0 before the fill, beside
    the rate scripts/sha_static.py derives from the kernels' instructions (what the estimate uses)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from sha_static import RECORDED

    rows, d = min(gpu.n_rows, TREE_RATE_ROWS), gpu.d
    top = max(1, (rows - 1).bit_length())

    def work(g: Any) -> list[float]:
        buf = cp.ones((rows, d), dtype=cp.int8)  # SHA-256's time does not depend on the bytes
        seconds = _cupy_timer(cp, lambda: g.tree(buf, rows, top), lambda: None)
        return seconds

    seconds = runtime.on(0, work)
    cp.get_default_memory_pool().free_all_blocks()
    return {
        "rows": rows,
        "d": d,
        "row_bytes_per_s": _stats([rows * d / s for s in seconds]),
        "derived_row_bytes_per_s": RECORDED.row_bytes_per_s(d),  # sm_90 instructions, x 0.70 of peak
    }


def _host_model(host: Any, layout: Any, lanes: int, rate: float, bandwidth: float) -> float:
    """`host_fill_seconds` on this one GPU at the params' own rates."""
    from gpuproof.protocol.capacity.cupy_prover import host_fill_seconds
    from gpuproof.protocol.capacity.params import GPU_HASH_BYTES_PER_S, HOST_LINK_BYTES_PER_S

    return host_fill_seconds(
        host,
        layout,
        1,
        lanes,
        rate_tops=rate,
        bandwidth_gbs=bandwidth,
        hash_bytes_per_s=GPU_HASH_BYTES_PER_S,
        link_bytes_per_s=HOST_LINK_BYTES_PER_S,
    )


def _host_lanes_check(
    cp: Any, runtime: Any, host: Any, options: Any, key: Any, *, rate: float, bandwidth: float
) -> list[dict[str, Any]]:
    """Host RAM's fill alone, after the GPU's (no GPU fill beside it), with one lane and with two
    (pageable host memory, as the probe runs), then two lanes into pinned memory (`host_pinned`:
    its page-locking inside `fill_s`): the measured seconds beside `host_fill_seconds` for each, so
    the lanes' overlap is calibrated (docs/protocol.md §17.11 "Lanes") and the host link's rate
    pageable vs pinned measured (the lever left for 1-2 TiB hosts, protocol §17.9)."""
    import dataclasses
    import secrets
    import time

    from gpuproof.protocol.capacity import phase
    from gpuproof.protocol.capacity.cupy_prover import CupyCapacityProver

    out = []
    params = phase([host])
    for lanes, pinned in ((1, False), (2, False), (2, True)):
        lane_options = dataclasses.replace(options, host_lanes=lanes, host_beside=False, host_pinned=pinned)
        prover = CupyCapacityProver(
            secrets.token_bytes(32),
            key.public_hex,
            "gpu-check-lanes",
            params,
            runtime=runtime,
            options=lane_options,
        )
        plan = prover.check()
        runtime.prepare([0], plan.lane_ids)
        start = time.perf_counter()
        prover.fill()
        seconds = time.perf_counter() - start
        assert plan.host is not None
        out.append(
            {
                "lanes": plan.host_lanes,
                "pinned": pinned,
                "fill_s": seconds,
                "fill_parts_s": dict(prover.fill_parts_s),
                "model_s": _host_model(host, plan.host, plan.host_lanes, rate, bandwidth),
            }
        )
        del prover
        cp.get_default_memory_pool().free_all_blocks()
    return out


def capacity(
    out_path: Path,
    fill_bytes: int | None = None,
    d: int = 1024,
    *,
    fraction: float = 0.90,
    host_bytes: int = 8 << 30,
    samples: int | None = None,
    double: bool = False,
) -> dict[str, Any]:
    """The capacity phase for real on GPU 0 (module docstring): fill, rounds, openings, verified."""
    import secrets
    import time

    from gpuproof.protocol.capacity import (
        CapacitySession,
        SignedCapacityCommitment,
        gpu_target,
        host_target,
        phase,
        verify_capacity,
    )
    from gpuproof.protocol.capacity.cupy_prover import (
        CupyCapacityOptions,
        CupyCapacityProver,
        CupyCapacityRuntime,
        plan_memory,
    )
    from gpuproof.protocol.capacity.draws import bandwidth_round
    from gpuproof.protocol.capacity.params import (
        FILL_FRACTION,
        GPU_HASH_BYTES_PER_S,
        HOST_D,
        HOST_LINK_BYTES_PER_S,
        HOST_SAMPLES,
        LOG2_Q,
    )
    from gpuproof.protocol.keys import SigningKey

    if double:
        from benchmark_probe.cupy_double import CupyTestDouble
        from benchmark_probe.nvml_double import fake_gpu

        cp: Any = CupyTestDouble.for_gpus([fake_gpu(0)], device_memory_bytes=DOUBLE_MEMORY)
        options = CupyCapacityOptions(margin_bytes=0)
    else:
        import cupy

        cp = cupy
        options = CupyCapacityOptions()
    host_d = min(HOST_D, d) if double else HOST_D
    samples = samples if samples is not None else (256 if double else HOST_SAMPLES)
    model, rate, bandwidth, known = _capacity_model(cp)
    result: dict[str, Any] = {"model": model, "reference_known": known, "double": double, "d": d}
    with cp.cuda.Device(0):
        result["copy_d2d"] = _guard(lambda: _cupy_copy(cp, 1 << 16 if double else 1 << 29))
        cp.get_default_memory_pool().free_all_blocks()
        free, total = cp.cuda.runtime.memGetInfo()
    target = fill_bytes if fill_bytes is not None else int(fraction * free)
    claimed = math.ceil(target * LOG2_Q / 8 / FILL_FRACTION)  # rows_for(claimed) x d ~ target
    gpu = gpu_target(0, claimed, rate_tops=rate, bandwidth_gbs=bandwidth, d=d)
    targets = [gpu]
    if host_bytes:
        targets.append(
            host_target(
                host_bytes,
                fill_rate_tops=rate,
                d=host_d,
                samples=samples,
                fill_bandwidth_gbs=bandwidth,
                fill_hash_bytes_per_s=GPU_HASH_BYTES_PER_S,
                link_bytes_per_s=HOST_LINK_BYTES_PER_S,
            )
        )
    params = phase(targets)
    result.update(
        free_bytes=free,
        total_bytes=total,
        n_rows=gpu.n_rows,
        stages=gpu.n_stages,
        fill_bytes=gpu.fill_bytes,
        fill_fraction_of_free=gpu.fill_bytes / free,
        host_fill_bytes=targets[-1].fill_bytes if host_bytes else 0,
        params=params.model_dump(mode="json"),
    )
    runtime = CupyCapacityRuntime(cp)
    plan = plan_memory(params, runtime, options)
    result["memory"] = {
        "fits": plan.fits,
        "describe": plan.describe(),
        "devices": [
            {"device": b.device, "free": b.free_bytes, "fills": b.fill_bytes, "working": b.working_bytes}
            for b in plan.devices
        ],
        "group_rows": plan.group_rows,
        "host_lanes": plan.host_lanes,
        "beside": plan.beside,  # host RAM's fill beside the GPU fill (lanes 1..), else after it
        "host_layout": None
        if plan.host is None
        else {
            "block_rows": plan.host.block_rows,
            "window_rows": plan.host.window_rows,
            "slabs": plan.host.slabs,
        },
    }

    def save(stage: str) -> None:
        """Written after every step, so a stage timeout still leaves what was measured."""
        result["reached"] = stage
        out_path.write_text(json.dumps(result, indent=2, default=float))
        print(f"capacity: {stage} ({time.strftime('%X')})", file=sys.stderr, flush=True)

    if not plan.fits:
        save("refused")
        print(f"capacity: NOT run: {plan.describe()}")
        return result
    cache = Path(os.environ.get("CUPY_CACHE_DIR") or Path.home() / ".cupy" / "kernel_cache")
    cached = set(cache.glob("*.cubin")) if cache.is_dir() else set()
    t0 = time.perf_counter()
    runtime.prepare(
        [0], plan.lane_ids
    )  # kernels built, cuBLAS warmed: outside the timed fill, as the probe does
    # A first run's build (NVRTC; probe_estimate.CAPACITY_BUILD_S, timed without a GPU) when CuPy's
    # kernel cache gained a file, else a later run's load.
    result["prepare_s"] = time.perf_counter() - t0
    result["prepare_built"] = bool(set(cache.glob("*.cubin")) - cached) if cache.is_dir() else None
    result["tree_rate"] = _tree_rate(cp, runtime, gpu)
    save("tree rate")
    key = SigningKey.generate()
    nonce = secrets.token_bytes(32)
    prover = CupyCapacityProver(nonce, key.public_hex, "gpu-check", params, runtime=runtime, options=options)
    clock = time.perf_counter
    session = CapacitySession(params, opened_at=clock())
    signed = SignedCapacityCommitment.sign(prover.fill(), key)
    session.receive_commitment(signed, clock())
    assert session.commitment_received_at is not None
    fill_s = session.commitment_received_at - session.opened_at
    result["fill_s"] = fill_s
    save("filled")
    nonces: dict[int, bytes] = {}
    rounds = []
    while not session.done:
        opened = session.open_round(clock())
        nonces[opened.round] = bytes.fromhex(opened.nonce)
        answer = prover.answer(opened)
        session.receive_answer(answer, clock())
        record = session.rounds[-1]
        assert record.received_at is not None
        tp = params.target(opened.targets[0])
        assert tp is not None
        swept = opened.round == bandwidth_round(params)
        rounds.append(
            {
                "round": opened.round,
                "targets": opened.targets,
                "mode": "bandwidth" if swept else tp.mode,
                "seconds": record.received_at - record.sent_at,
                "expected_s": tp.sweep_expected_s if swept else tp.round_expected_s,
                "deadline_s": tp.sweep_deadline_s if swept else tp.round_deadline_s,
            }
        )
    result["rounds"] = rounds
    save("rounds answered")
    no_sweeps = {"sweeps": 0, "sweep_spots": 0, "sweep_expected_s": 0.0, "sweep_deadline_s": 0.0}
    sampled = gpu.model_copy(update={"mode": "sample", "chunk_rows": 1, "samples": samples, **no_sweeps})
    sample_s = []
    for _ in range(3):
        t0 = clock()
        prover.answer_root(sampled, secrets.token_bytes(32))
        sample_s.append(clock() - t0)
    spots, walks = session.draw()
    t0 = clock()
    openings = prover.open(nonces, spots, walks)
    open_s = clock() - t0
    result.update(sample_gpu_s=sample_s, open_s=open_s)
    save("opened")
    assert session.draw_secret is not None
    t0 = clock()
    verdict = verify_capacity(
        params,
        machine_id=key.public_hex,
        challenge_id="gpu-check",
        nonce=nonce,
        signed=signed,
        phase_opened_at=session.opened_at,
        commitment_received_at=session.commitment_received_at,
        rounds=session.rounds,
        draw_secret=session.draw_secret,
        openings=openings,
    )
    verify_s = clock() - t0
    codes = [r.code for r in verdict.reasons]
    scan = [r["seconds"] for r in rounds if r["targets"] == [0] and r["mode"] == "scan"]
    host = [r["seconds"] for r in rounds if r["targets"] != [0]]
    swept = [r["seconds"] for r in rounds if r["mode"] == "bandwidth"]
    result.update(
        fill_s=fill_s,
        fill_parts_s=prover.fill_parts_s,  # seconds from the fill's start: gpu_done, touched, host_start, host_done
        # per GPU target, host seconds inside its fill's launches and cuBLAS calls, and their count:
        # what issuing the work costs (the GIL serialises it across 8 GPUs' threads; CALL_S)
        fill_cpu={str(k): v for k, v in prover.fill_cpu.items()},
        # per target, the openings' recompute as run (`reopen.plan`): threshold, blocks, descents,
        # the largest job, row-stages and their fraction of the fill's N L (open_s against
        # scripts/probe_estimate.py's "openings recompute" model)
        recompute={str(k): v for k, v in prover.recompute.items()},
        fill_expected_s={str(t.target): t.fill_expected_s for t in params.targets},
        # the host fill's model with the lanes the plan gave and with one (fill_expected_s: one)
        host_fill_model_s=None
        if not host_bytes or plan.host is None
        else {
            str(lanes): _host_model(targets[-1], plan.host, lanes, rate, bandwidth)
            for lanes in sorted({1, plan.host_lanes})
        },
        fill_deadline_s=params.fill_deadline_s,
        rounds=rounds,
        scan={
            "seconds_p50": statistics.median(scan),
            "seconds_max": max(scan),
            "bytes_per_s": gpu.fill_bytes / statistics.median(scan),
        },
        # the bandwidth round (docs/protocol.md §17.12): P sweeps over the fill, what it bounds
        bandwidth_round=None
        if not swept
        else {
            "sweeps": gpu.sweeps,
            "seconds": swept[0],
            "expected_s": gpu.sweep_expected_s,
            "deadline_s": gpu.sweep_deadline_s,
            "bytes_per_s": gpu.sweeps * gpu.fill_bytes / swept[0],
        },
        sample_gpu={
            "samples": samples,
            "seconds": statistics.median(sample_s),
            "rows_per_s": samples / statistics.median(sample_s),
        },
        host_rounds=None
        if not host
        else {"seconds_p50": statistics.median(host), "rows_per_s": samples / statistics.median(host)},
        open_s=open_s,
        verify_s=verify_s,
        reasons=codes,
        checks=[c for c in codes if c not in TIMING_CODES] or "accepted",
        deadlines=[c for c in codes if c in TIMING_CODES] or "met",
    )
    save("verified")
    if host_bytes:
        del prover  # its buffers and host RAM, before the lanes check fills host RAM again
        cp.get_default_memory_pool().free_all_blocks()
        result["host_lanes_check"] = _host_lanes_check(
            cp, runtime, targets[-1], options, key, rate=rate, bandwidth=bandwidth
        )
        save("host lanes")
    copy = result["copy_d2d"].get("median")
    expected = sum(t.fill_expected_s for t in params.targets)
    print(
        f"capacity: {gpu.n_rows} rows x {d} ({gpu.fill_bytes / 2**30:.2f} GiB, "
        f"{100 * result['fill_fraction_of_free']:.1f}% of free), L = {gpu.n_stages}; fill {fill_s:.2f} s "
        f"(expected {expected:.2f}, deadline {params.fill_deadline_s:.2f}); "
        f"scan round {result['scan']['seconds_p50']:.3f} s ({result['scan']['bytes_per_s'] / 1e9:.1f} GB/s; "
        f"d2d copy {copy if copy is not None else float('nan'):.1f} GB/s); sample round "
        f"{result['sample_gpu']['seconds']:.3f} s; bandwidth round "
        f"{(result['bandwidth_round'] or {}).get('bytes_per_s', float('nan')) / 1e9:.1f} GB/s; "
        f"open {open_s:.2f} s; checks {result['checks']}, "
        f"deadlines {result['deadlines']}"
    )
    lanes_check = result.get("host_lanes_check") or []
    if len(lanes_check) == 3:
        one, two, pinned = (c["fill_s"] for c in lanes_check)
        print(
            f"capacity: host RAM's fill alone ({result['host_fill_bytes'] / 2**30:.2f} GiB): 1 lane "
            f"{one:.2f} s, 2 lanes {two:.2f} s, 2 lanes pinned {pinned:.2f} s (page-locking included)"
        )
    issued, reopened = result["fill_cpu"].get("0", {}), result["recompute"].get("0", {})
    if issued.get("calls"):  # what one call costs the host (the estimate's CALL_S, 10 us)
        print(
            f"capacity: the fill issued {issued['calls']:,} calls in {issued['call_s']:.2f} s "
            f"({1e6 * issued['call_s'] / issued['calls']:.1f} us a call); the recompute "
            f"{int(reopened.get('calls', 0)):,} calls, "
            f"{reopened.get('fraction', float('nan')):.4f} of the fill's row-stages"
        )
    return result


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    sub = parser.add_subparsers(dest="command", required=True)
    ref = sub.add_parser("reference")
    ref.add_argument("--bench", type=Path, required=True)
    ref.add_argument("--out", type=Path, required=True)
    cmp_ = sub.add_parser("compare")
    cmp_.add_argument("--bench", type=Path, nargs="+", required=True)
    cmp_.add_argument("--reference", type=Path, required=True)
    cmp_.add_argument("--out", type=Path)
    prf = sub.add_parser("proof")
    prf.add_argument("--inventory", type=Path, required=True)
    prf.add_argument("--out", type=Path, required=True)
    for size in ("n", "d", "steps"):
        prf.add_argument(f"--{size}", type=int, help="override the service's choice (smoke runs)")
    prf.add_argument(
        "--beside-host-bytes",
        type=int,
        default=0,
        help="run the proof beside a first run's background work, touching a buffer of this size",
    )
    cap = sub.add_parser("capacity")
    cap.add_argument("--out", type=Path, required=True)
    cap.add_argument("--bytes", type=int, help="GPU fill size (default: --fraction of GPU 0's free memory)")
    cap.add_argument("--fraction", type=float, default=0.90)
    cap.add_argument("--d", type=int, default=1024)
    cap.add_argument("--host-bytes", type=int, default=8 << 30, help="host RAM target (0: none)")
    cap.add_argument("--samples", type=int, help="rows per sample round (default: the service's)")
    cap.add_argument("--double", action="store_true", help="the CUDA test double, tiny sizes (no GPU)")
    args = parser.parse_args()
    if args.command == "capacity":
        if args.double:
            capacity(
                args.out, args.bytes, 32, fraction=0.70, host_bytes=8192, samples=args.samples, double=True
            )
        else:
            capacity(
                args.out,
                args.bytes,
                args.d,
                fraction=args.fraction,
                host_bytes=args.host_bytes,
                samples=args.samples,
            )
    elif args.command == "reference":
        reference(args.bench, args.out)
    elif args.command == "proof":
        proof(args.inventory, args.out, args.n, args.d, args.steps, args.beside_host_bytes)
    else:
        compare(args.bench, args.reference, args.out)


if __name__ == "__main__":
    main()
