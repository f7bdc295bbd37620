#!/usr/bin/env bash
# Fetch, here (where PyPI is reachable), the wheels the probe needs that the GPU machine's image
# lacks, into .whl/ (git-ignored), for Python 3.12 on x86-64. The device image already has numpy,
# psutil, requests, nvidia-ml-py, cupy-cuda13x and torch (kept: CuPy is built against its numpy); it
# has no pydantic, cryptography or sr25519 bindings (/work/.library/device/KINDS.md, read 2026-11-27).
# Then: run `scripts/gpu_check.sh OUTDIR` there with `.whl` carried; it installs them to /tmp/site.
# Versions: those the project's own venv resolved (make venv), so both machines run the same code.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .whl && mkdir -p .whl
PINS=(
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
  typing-extensions==4.16.0 cryptography==50.0.2 cffi==2.1.1 pycparser==3.12 py-sr25519-bindings==0.2.4
  # the CLI stack at the versions the tests ran (the image's typer/rich versions are not recorded)
  typer==0.29.2 annotated-doc==0.0.7 shellingham==1.5.4 rich==15.0.0 markdown-it-py==4.3.0 mdurl==0.1.2
  pygments==2.21.0
)
for pin in "${PINS[@]}"; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_34_x86_64 -d .whl "$pin"
done
du -sh .whl && ls .whl
