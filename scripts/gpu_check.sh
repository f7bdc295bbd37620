#!/usr/bin/env bash
# One run on a GPU machine: probe inventory, probe benchmarks (3 runs, for repeatability), a full
# proof of throughput at the service's parameters (verified, beside its bare-GEMM floor), reference
# measurements (torch / CuPy, same sizes and method), the capacity phase run by the probe's CuPy
# prover on GPU 0 (a fill of 90% of its free memory and 8 GiB of host RAM, timed rounds, openings,
# verified; beside a plain device copy), then a comparison table, printed last.
# Usage: scripts/gpu_check.sh OUTDIR
# Needs CuPy, nvidia-ml-py, torch, numpy, typer, rich, psutil, requests present (the device image has
# them); the rest (pydantic, cryptography, sr25519) as wheels in .whl/ from scripts/gpu_wheels.sh,
# carried along, installed to /tmp/site here. Budget: <= 4 minutes on one H100 for the stages before
# capacity; the capacity stage is ESTIMATED at 1-2 minutes on an H200 (its fill ~37 s by
# params.fill_seconds; the openings' recompute a few % of it since the descents, reopen.py; host
# RAM, rounds, the host lanes check); its JSON is written after every step, so a timeout still
# leaves the fill time. Last, the proof again beside a
# first run's background work (≈ 40 s, ESTIMATE): a timeout there loses only that figure.
set -uo pipefail

OUT="${1:?usage: scripts/gpu_check.sh OUTDIR}"
mkdir -p "$OUT" && OUT="$(cd "$OUT" && pwd)"
cd "$(dirname "$0")/.." || exit 1
PY="${PYTHON:-python3}"
if [ -d .whl ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "installing .whl failed" >&2; exit 1; }
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="layers/core:.${PYTHONPATH:+:$PYTHONPATH}"
export CUDA_DEVICE_ORDER=PCI_BUS_ID   # CUDA ordinals follow NVML's (PCI) order
PROBE=("$PY" -m benchmark_probe)

stage() { echo "== $1 ($(date +%T))" >&2; }

stage "environment"
{ nvidia-smi; "$PY" -c 'import cupy, sys; print("cupy", cupy.__version__, "python", sys.version)';
  "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'; } \
  > "$OUT/environment.txt" 2>&1

stage "probe inventory"
timeout 60 "${PROBE[@]}" inventory --json > "$OUT/inventory.json" 2> "$OUT/inventory.stderr"
echo "inventory exit $?" >&2

for run in 1 2 3; do
  stage "probe bench run $run"
  START=$(date +%s%N)
  timeout 120 "${PROBE[@]}" bench --json > "$OUT/bench_run$run.json" 2> "$OUT/bench_run$run.stderr"
  echo "bench run $run exit $? in $(( ($(date +%s%N) - START) / 1000000 )) ms" >&2
done

stage "proof of throughput"
timeout 150 "$PY" scripts/gpu_check.py proof --inventory "$OUT/inventory.json" --out "$OUT/proof.json" \
  > "$OUT/proof.txt" 2> "$OUT/proof.stderr"
echo "proof exit $?" >&2

stage "capacity phase (CuPy prover)"
timeout 300 "$PY" scripts/gpu_check.py capacity --out "$OUT/capacity.json" \
  > "$OUT/capacity.txt" 2> "$OUT/capacity.stderr"
echo "capacity exit $?" >&2

stage "reference measurements"
timeout 90 "$PY" scripts/gpu_check.py reference --bench "$OUT/bench_run1.json" --out "$OUT/reference.json" \
  2> "$OUT/reference.stderr"
echo "reference exit $?" >&2

stage "proof of throughput beside a first run's background work (capacity build, host RAM touch)"
timeout 90 "$PY" scripts/gpu_check.py proof --inventory "$OUT/inventory.json" --out "$OUT/proof_beside.json" \
  --beside-host-bytes $((32 << 30)) > "$OUT/proof_beside.txt" 2> "$OUT/proof_beside.stderr"
echo "proof beside exit $?" >&2

cat "$OUT/proof.txt" "$OUT/proof_beside.txt" "$OUT/capacity.txt"
stage "comparison (probe vs reference)"
"$PY" scripts/gpu_check.py compare --bench "$OUT"/bench_run{1,2,3}.json --reference "$OUT/reference.json" \
  --out "$OUT/comparison.json" | tee "$OUT/comparison.txt"
