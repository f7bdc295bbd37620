#!/usr/bin/env bash
# One run on a GPU machine: probe inventory, probe benchmarks (3 runs, for repeatability), reference
# measurements (torch / CuPy, same sizes and method), then a comparison table, printed last.
# Usage: scripts/gpu_check.sh OUTDIR        Installs nothing; needs CuPy, nvidia-ml-py, torch present.
# Budget: <= 4 minutes on one H100 (each stage has its own timeout).
set -uo pipefail

OUT="${1:?usage: scripts/gpu_check.sh OUTDIR}"
mkdir -p "$OUT"
cd "$(dirname "$0")/.." || exit 1
export PYTHONPATH="layers/core:.${PYTHONPATH:+:$PYTHONPATH}"
export CUDA_DEVICE_ORDER=PCI_BUS_ID   # CUDA ordinals follow NVML's (PCI) order
PY="${PYTHON:-python3}"
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

stage "reference measurements"
timeout 90 "$PY" scripts/gpu_check.py reference --bench "$OUT/bench_run1.json" --out "$OUT/reference.json" \
  2> "$OUT/reference.stderr"
echo "reference exit $?" >&2

stage "comparison (probe vs reference)"
"$PY" scripts/gpu_check.py compare --bench "$OUT"/bench_run{1,2,3}.json --reference "$OUT/reference.json" \
  --out "$OUT/comparison.json" | tee "$OUT/comparison.txt"
