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
# The stages' own limits add up to more than one device call allows (600 s), so each runs under
# the smaller of its limit and what is left of the run's budget (GPU_CHECK_BUDGET_S, 540 s: the call's
# limit less a margin), less GPU_CHECK_RESERVE_S (20 s) kept for the comparison printed last; a
# stage with under 3 s left is skipped and says so. Every stage writes its own files, so a stage cut
# short loses only its figures. The device tool brings back at most 8 files, and this run writes
# about 22: with GPU_CHECK_ARCHIVE=PATH.tgz the folder is packed into that one file after every stage
# (and at the end), so a run stopped at the call's limit still brings back what it had.
set -uo pipefail

OUT="${1:?usage: scripts/gpu_check.sh OUTDIR}"
mkdir -p "$OUT" && OUT="$(cd "$OUT" && pwd)"
cd "$(dirname "$0")/.." || exit 1
PY="${PYTHON:-python3}"
BUDGET_S="${GPU_CHECK_BUDGET_S:-540}"
RESERVE_S="${GPU_CHECK_RESERVE_S:-20}"
WHL="${GPU_CHECK_WHL:-.whl}"
START_S=$SECONDS
if [ -d "$WHL" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHL"/*.whl \
    || { echo "installing $WHL failed" >&2; exit 1; }
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="layers/core:.${PYTHONPATH:+:$PYTHONPATH}"
export CUDA_DEVICE_ORDER=PCI_BUS_ID   # CUDA ordinals follow NVML's (PCI) order
PROBE=("$PY" -m benchmark_probe)

ARCHIVE="${GPU_CHECK_ARCHIVE:-}"
archive() {
  [ -n "$ARCHIVE" ] || return 0
  tar czf "$ARCHIVE.part" -C "$OUT" . && mv "$ARCHIVE.part" "$ARCHIVE"
}
stage() {
  archive
  echo "== $1 ($(date +%T), $((SECONDS - START_S)) s of $BUDGET_S)" >&2
}
# run LIMIT STDOUT STDERR COMMAND...: the command under LIMIT seconds, capped by the budget left
run() {
  local limit=$1 out=$2 err=$3
  shift 3
  local left=$((BUDGET_S - RESERVE_S - (SECONDS - START_S)))
  ((left < limit)) && limit=$left
  if ((limit < 3)); then
    echo "skipped: the run's budget ($BUDGET_S s, $RESERVE_S s kept for the comparison) is spent" | tee "$err" >&2
    return 124
  fi
  timeout "$limit" "$@" > "$out" 2> "$err"
}

stage "environment"
{ nvidia-smi; "$PY" -c 'import cupy, sys; print("cupy", cupy.__version__, "python", sys.version)';
  "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'; } \
  > "$OUT/environment.txt" 2>&1

stage "CuPy's surface (the CUDA double's names, signatures and ABI numbers against this CuPy)"
run 30 "$OUT/cupy_surface.txt" "$OUT/cupy_surface.stderr" \
  "$PY" scripts/cupy_surface_check.py --include "${CUDA_HOME:-/usr/local/cuda}/include"
echo "cupy surface exit $?" >&2

stage "probe inventory"
run 60 "$OUT/inventory.json" "$OUT/inventory.stderr" "${PROBE[@]}" inventory --json
echo "inventory exit $?" >&2

for run in 1 2 3; do
  stage "probe bench run $run"
  START=$(date +%s%N)
  run 120 "$OUT/bench_run$run.json" "$OUT/bench_run$run.stderr" "${PROBE[@]}" bench --json
  echo "bench run $run exit $? in $(( ($(date +%s%N) - START) / 1000000 )) ms" >&2
done

stage "proof of throughput"
run 150 "$OUT/proof.txt" "$OUT/proof.stderr" \
  "$PY" scripts/gpu_check.py proof --inventory "$OUT/inventory.json" --out "$OUT/proof.json"
echo "proof exit $?" >&2

stage "capacity phase (CuPy prover)"
run 300 "$OUT/capacity.txt" "$OUT/capacity.stderr" "$PY" scripts/gpu_check.py capacity --out "$OUT/capacity.json"
echo "capacity exit $?" >&2

stage "reference measurements"
run 90 /dev/stdout "$OUT/reference.stderr" \
  "$PY" scripts/gpu_check.py reference --bench "$OUT/bench_run1.json" --out "$OUT/reference.json"
echo "reference exit $?" >&2

stage "proof of throughput beside a first run's background work (capacity build, host RAM touch)"
run 90 "$OUT/proof_beside.txt" "$OUT/proof_beside.stderr" "$PY" scripts/gpu_check.py proof \
  --inventory "$OUT/inventory.json" --out "$OUT/proof_beside.json" --beside-host-bytes $((32 << 30))
echo "proof beside exit $?" >&2

cat "$OUT/proof.txt" "$OUT/proof_beside.txt" "$OUT/capacity.txt" 2> /dev/null
stage "comparison (probe vs reference)"
timeout "$RESERVE_S" "$PY" scripts/gpu_check.py compare --bench "$OUT"/bench_run{1,2,3}.json --reference "$OUT/reference.json" \
  --out "$OUT/comparison.json" | tee "$OUT/comparison.txt"
archive
