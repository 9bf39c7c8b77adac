# The README's two commands: `make run` (the live demo) and `make test` (everything CI checks).
# Both do all set-up on a fresh machine: a virtualenv with the package, and the Kubernetes
# binaries built from their Go modules into ~/.cache/computegate (reused on later runs).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup binaries browser run test lint unit e2e bench bench-quick manifests lock kind-demo clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# Prints the folder that holds etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kubectl, kwok and helm; harness and tests read it.
binaries:
	@mkdir -p $(VENV)
	bash hack/install-k8s-binaries.sh > $(VENV)/assets-path

run: setup binaries
	COMPUTEGATE_ASSETS=$$(cat $(VENV)/assets-path) $(VENV)/bin/computegate demo --examples examples

lint: setup
	$(VENV)/bin/ruff check operator tests bench
	$(VENV)/bin/ruff format --check operator tests bench
	$(VENV)/bin/mypy --strict operator/computegate
	$(VENV)/bin/lint-imports

# Chromium from the distribution's packages: a test renders `computegate report usage`'s HTML
# with it, headless (tests/unit/test_usage_report.py fails, naming this, without it).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

test: setup binaries browser lint
	COMPUTEGATE_ASSETS=$$(cat $(VENV)/assets-path) $(PY) -m pytest

unit: setup binaries browser
	$(PY) -m pytest -m "not e2e"

# Every benchmark in one interleaved run (docs/benchmarks.md): the engine, the webhook's HTTPS
# endpoint against aiohttp and OPA, pod creates through the API server, the operator's memory.
# OPA and vegeta are built with `go install` into ~/.cache/computegate/bench-bin the first time.
# Never part of `make test` or CI. COMPUTEGATE_ASSETS, if set, names the Kubernetes binaries.
bench: setup binaries
	COMPUTEGATE_ASSETS=$${COMPUTEGATE_ASSETS:-$$(cat $(VENV)/assets-path)} $(PY) -m bench.run

bench-quick: setup binaries
	COMPUTEGATE_ASSETS=$${COMPUTEGATE_ASSETS:-$$(cat $(VENV)/assets-path)} $(PY) -m bench.run --quick

# The chart's generated templates (CRDs, webhook configurations) and manifests/ (the chart
# rendered with default values); tests fail when the checked-in copies drift.
manifests: setup binaries
	$(VENV)/bin/computegate chart-sync --manifests manifests --helm "$$(cat $(VENV)/assets-path)/helm"

# The image's exact, hashed dependencies, resolved by uv (a dev dependency) from pyproject.toml's
# ranges for the image's Python; tests/unit/test_lockfile.py checks it agrees with pyproject.toml.
LOCK_COMMAND = uv pip compile pyproject.toml --python-version 3.11 --universal --generate-hashes --output-file requirements.lock
lock: setup
	cd $(CURDIR) && $(VENV)/bin/$(LOCK_COMMAND)

# Needs Docker, kind, kubectl and helm on PATH (not run in CI; see docs/install.md).
kind-demo:
	bash hack/kind-demo.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
