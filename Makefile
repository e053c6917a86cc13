# Two commands for a newcomer: `make demo` (the main job on embedded defaults) and `make test`.
# Both install into .venv first (idempotent: reinstalls only when pyproject.toml changes).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo_out

.PHONY: setup demo test check reproduce-mini bench-ingest bench-recipes bench-train bench-serve bench-bulk bench-bucket clean help
.PHONY: cluster-up cluster-down submit-prepare submit-balance submit-train submit-evaluate submit-transcribe serve-deploy mlflow-ui

help:
	@echo "make demo   - the whole story: corpus -> store -> balance -> train -> evaluate -> registry -> bulk -> serve"
	@echo "make reproduce-mini - the paper's two claims in miniature (BUDGET=70m, ABLATION_OUT=runs/ablation)"
	@echo "make test   - run the test suite (everything: Ray, Serve, the browser, benchmark smokes)"
	@echo "make check  - the fast tier: tests that start no Ray, Serve or subprocess benchmark (under 2 min)"
	@echo "make setup  - install into .venv (and espeak-ng if missing)"
	@echo "make bench-ingest - corpus import throughput vs a plain loop (see BENCHMARKS.md)"
	@echo "make bench-recipes - corpus recipes: archives read in place vs unpacked, clips/s per recipe (see BENCHMARKS.md)"
	@echo "make bench-train  - training throughput: our Ray Train job vs HF Trainer with a librosa collator (see BENCHMARKS.md)"
	@echo "make bench-serve  - Serve app under 1/8/32 clients, batched vs unbatched; 1-20 s clips, continuous vs request batching"
	@echo "make bench-bulk   - bulk transcription on Ray Data vs a per-file and a batched loop (see BENCHMARKS.md)"
	@echo "make bench-bucket - prepare into an S3-compatible bucket (moto on 127.0.0.1) vs onto local disk"
	@echo "make cluster-up / cluster-down - a local Ray head node (dashboard http://127.0.0.1:8265), token auth"
	@echo "make submit-prepare|submit-balance|submit-train|submit-evaluate|submit-transcribe - ray job submit to it"
	@echo "make serve-deploy - serve deploy serve_apps/serve_config.yaml to it"
	@echo "make mlflow-ui  - MLflow UI on http://127.0.0.1:5000 (sqlite:///mlflow.db, artifacts in mlartifacts/)"

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

# two xdist workers, modules whole and the longest first (tests/conftest.py); TEST_WORKERS=0 runs in one process
TEST_WORKERS ?= 2
test: setup
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder --durations=15 tests

# the inner loop: pure logic, config, normaliser, balancing, scoring, prompts (markers: pyproject.toml)
check: setup
	$(BIN)/python -m pytest -q -m "not ray and not slow and not gpu" tests

BUDGET ?= 70m
ABLATION_OUT ?= runs/ablation
reproduce-mini: setup
	$(BIN)/python jobs/experiments/balance_ablation.py --out $(ABLATION_OUT) --budget $(BUDGET)

bench-ingest: setup
	$(BIN)/python benchmarks/ingest.py

bench-recipes: setup
	$(BIN)/python benchmarks/ingest_recipes.py

bench-train: setup
	$(BIN)/python benchmarks/train_throughput.py --repeats 2 --ours-passes 2 1 --step-ablation 16

bench-serve: setup
	$(BIN)/python benchmarks/serve_load.py

bench-bulk: setup
	$(BIN)/python benchmarks/bulk_transcribe.py

bench-bucket: setup
	$(BIN)/python benchmarks/prepare_bucket.py

clean:
	rm -rf $(DEMO_DIR) .pytest_cache

# --- A Ray cluster: a local head node, jobs, Serve, MLflow UI (cluster/local-head.md has the details) ------------
# Ray 2.60 turns token authentication on for a head started by `ray start --head`; every client (ray job, serve
# deploy) must present the same token. One is generated into .ray_token (gitignored) on first use and named by
# RAY_AUTH_TOKEN_PATH, so it never appears on a command line. Remote cluster: ADDRESS=http://HEAD:8265 and
# RAY_TOKEN=<a file holding that cluster's token>.
RAY_PORT ?= 6379
DASHBOARD_PORT ?= 8265
ADDRESS ?= http://127.0.0.1:$(DASHBOARD_PORT)
RAY_TOKEN ?= .ray_token
RAY_START_ARGS ?=
RAY_AUTH = RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$(abspath $(RAY_TOKEN))
# Job arguments. A job runs in a copy of the project (cluster/runtime_env.yaml), so paths are made absolute here;
# on a multi-node cluster they must be on storage every node can read.
STORE ?= $(DEMO_DIR)/store
CORPUS ?= $(DEMO_DIR)/corpus/corpus.json
PLAN ?= $(DEMO_DIR)/plans/two-stage
CONFIG ?= jobs/configs/qwen3_asr/tiny_cpu.yaml
RUN ?= tiny-submitted
RUNS ?= runs
MODEL ?= models:/polyglot-lion-tiny@champion
INPUT ?= $(STORE)
EVAL_OUT ?= eval_out/$(RUN)
TRANSCRIPTS ?= transcripts_out/$(RUN)
TRACKING_URI ?= sqlite:///$(CURDIR)/mlflow.db
SERVE_CONFIG ?= serve_apps/serve_config.yaml
# appended to the job's arguments, e.g. ARGS="train.max_steps=20" (train) or ARGS="--limit 8" (transcribe)
ARGS ?=
abs = $(if $(findstring ://,$(1)),$(1),$(abspath $(1)))
SUBMIT = $(RAY_AUTH) $(BIN)/ray job submit --address $(ADDRESS) --runtime-env cluster/runtime_env.yaml --

$(RAY_TOKEN):
	@umask 077 && $(PY) -c "import secrets; print(secrets.token_hex(32))" > $@
	@echo "wrote a new Ray auth token to $@"

# The head's environment reaches every worker on it: the venv's python for `python jobs/X.py`, the checkout on
# PYTHONPATH for `serve deploy` (a Serve config cannot ship a local folder), the repo's MLflow store by absolute path.
cluster-up: setup $(RAY_TOKEN)
	PATH="$(CURDIR)/$(BIN):$$PATH" PYTHONPATH="$(CURDIR):$(CURDIR)/platform" \
	MLFLOW_TRACKING_URI="$(TRACKING_URI)" $(RAY_AUTH) \
	$(BIN)/ray start --head --port=$(RAY_PORT) --dashboard-host=127.0.0.1 --dashboard-port=$(DASHBOARD_PORT) \
		--num-cpus=$$(nproc) --disable-usage-stats $(RAY_START_ARGS)
	@echo "dashboard: $(ADDRESS) (it asks for the token in $(RAY_TOKEN))"

# `ray stop` stops every Ray process of this user on the machine, not only this head.
cluster-down:
	$(BIN)/ray stop

submit-prepare: $(RAY_TOKEN)
	$(SUBMIT) python jobs/prepare.py --specs $(call abs,$(CORPUS)) --store $(call abs,$(STORE)) $(ARGS)

submit-balance: $(RAY_TOKEN)
	$(SUBMIT) python jobs/balance.py --store $(call abs,$(STORE)) --strategy two-stage --out $(call abs,$(PLAN)) $(ARGS)

submit-train: $(RAY_TOKEN)
	$(SUBMIT) python jobs/train.py --config $(CONFIG) data.store=$(call abs,$(STORE)) data.plan=$(call abs,$(PLAN)) \
		run.name=$(RUN) run.output_dir=$(call abs,$(RUNS)) tracking.uri=$(TRACKING_URI) $(ARGS)

submit-evaluate: $(RAY_TOKEN)
	$(SUBMIT) python jobs/evaluate.py --model $(MODEL) --store $(call abs,$(STORE)) --out $(call abs,$(EVAL_OUT)) \
		--tracking-uri $(TRACKING_URI) $(ARGS)

submit-transcribe: $(RAY_TOKEN)
	$(SUBMIT) python jobs/transcribe.py --model $(MODEL) --input $(call abs,$(INPUT)) \
		--out $(call abs,$(TRANSCRIPTS)) --tracking-uri $(TRACKING_URI) $(ARGS)

serve-deploy: $(RAY_TOKEN)
	$(RAY_AUTH) $(BIN)/serve deploy $(SERVE_CONFIG) --address $(ADDRESS)

# Training puts artifacts beside its SQLite store (mlartifacts/), which is also where `mlflow ui` keeps uploads.
mlflow-ui: setup
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000
