# gpuproof: `make demo` runs the main job on the local embedded stack; `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
# The console's charting library, served by the console function from its package (no CDN).
CHART_JS := layers/core/gpuproof/console/static/chart.umd.min.js
CHROMIUM := /usr/bin/chromium

.PHONY: venv demo test lint typecheck unit integration e2e local bench openapi reason-codes wheel clean console-assets browser

venv: $(STAMP) $(NODE_STAMP) $(CHART_JS)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The local chain (Chopsticks + Rococo Asset Hub's chain spec) from package-lock.json; no install
# scripts run (nothing native is needed). Needs Node.js >= 20 and npm.
$(NODE_STAMP): package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund
	touch $(NODE_STAMP)

$(CHART_JS): $(NODE_STAMP) package-lock.json
	cp node_modules/chart.js/dist/chart.umd.min.js $@

console-assets: $(CHART_JS)

# The console's browser tests (tests/e2e/test_console_browser.py) drive Debian's chromium.
$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

browser: $(CHROMIUM)

lint: venv
	$(BIN)/cfn-lint template.yaml
	$(BIN)/ruff check .
	$(BIN)/ruff format --check layers benchmark_probe functions tests scripts
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest tests/unit -q

integration: venv
	$(BIN)/pytest tests/integration -q

e2e: venv browser
	$(BIN)/pytest tests/e2e -q

test: lint browser
	$(BIN)/pytest tests -q

local: venv
	$(BIN)/python -m gpuproof.local --parameter AllowCpuBackend=true --schedule-interval 2

demo: venv
	$(BIN)/python scripts/demo.py

bench: venv
	$(BIN)/python scripts/bench.py --out docs/benchmarks.md

openapi: venv
	$(BIN)/python -m gpuproof.api.openapi > docs/openapi.json

reason-codes: venv
	$(BIN)/python -m gpuproof.reasons_doc > docs/reason-codes.md

# A wheel to copy to a GPU host: `pip install 'dist/gpuproof-<version>-py3-none-any.whl[gpu]'`.
wheel: venv
	$(BIN)/pip wheel --quiet --no-deps --wheel-dir dist .
	@ls dist/*.whl

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .aws-sam dist build
