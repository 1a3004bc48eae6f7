# geodrop: `make run` starts the development cluster, `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit clean bench system-deps web

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The web client's tus-js-client, from npm at the version web/package-lock.json pins,
# copied into the folder the directory serves (npm from Debian when missing).
WEB_ASSET := src/geodrop/directory/static/tus.min.js
$(WEB_ASSET): web/package.json web/package-lock.json
	bash scripts/build-web.sh

web: $(WEB_ASSET)

run: $(STAMP) web
	@cat examples/demo.txt
	$(BIN)/geodrop cluster --config examples/dev-cluster.toml

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# curl, aria2, PostgreSQL and Chromium from Debian when missing (the tests start real ones).
system-deps:
	bash scripts/install-system-deps.sh

test: system-deps web lint typecheck
	$(BIN)/pytest

# `make bench` (not part of `make test`): the benchmark suite of bench/, which writes
# docs/BENCHMARKS.md and docs/bench-*.png. QUICK=1: the reduced set (< 5 minutes).
# ONLY=download,upload,control,smallfiles,memory,simulation: just those sections.
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	bash bench/install.sh
	$(BIN)/python -m bench $(if $(filter 1 yes true,$(QUICK)),--quick) $(if $(ONLY),--only $(ONLY))

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
	rm -rf web/node_modules $(WEB_ASSET) src/geodrop/directory/static/tus-js-client-LICENSE.txt test-output
