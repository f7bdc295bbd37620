# gpuproof: `make demo` runs the main job on the local embedded stack; `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint typecheck unit integration e2e local bench openapi clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: venv
	$(BIN)/cfn-lint template.yaml
	$(BIN)/ruff check .
	$(BIN)/ruff format --check layers benchmark_probe functions tests scripts
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest tests/unit -q

integration: venv
	$(BIN)/pytest tests/integration -q

e2e: venv
	$(BIN)/pytest tests/e2e -q

test: lint
	$(BIN)/pytest tests -q

local: venv
	$(BIN)/python -m gpuproof.local

demo: venv
	$(BIN)/python scripts/demo.py

bench: venv
	$(BIN)/python scripts/bench.py --out docs/benchmarks.md

openapi: venv
	$(BIN)/python -m gpuproof.api.openapi > docs/openapi.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .aws-sam
