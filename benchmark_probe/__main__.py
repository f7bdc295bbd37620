"""`python -m benchmark_probe` runs the CLI (same as the `benchmark-probe` console script)."""

from benchmark_probe.cli import app

app()
