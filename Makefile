# Two commands for a newcomer: `make demo` (the main job on embedded defaults) and `make test`.
# Both install into .venv first (idempotent: reinstalls only when pyproject.toml changes).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo_out

.PHONY: setup demo test bench-ingest clean help

help:
	@echo "make demo   - synth -> prepare -> balance -> stats on a synthetic four-language corpus"
	@echo "make test   - run the test suite"
	@echo "make setup  - install into .venv (and espeak-ng if missing)"
	@echo "make bench-ingest - corpus import throughput vs a plain loop (see BENCHMARKS.md)"

$(STAMP): pyproject.toml
	@command -v espeak-ng >/dev/null && command -v chromium >/dev/null || scripts/install-system-deps.sh
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# the CPU torch that lies on local disk; an unpinned torch would pull a multi-GB CUDA build
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/python -m polyglot_lion.demo --out $(DEMO_DIR)

test: setup
	$(BIN)/python -m pytest -q tests

bench-ingest: setup
	$(BIN)/python benchmarks/ingest.py

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
