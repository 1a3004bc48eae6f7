# geodrop: `make run` starts the development cluster, `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit clean bench system-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
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

test: system-deps lint typecheck
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
