# Entry points of the statistics engine (sidecar-scorer/stats).
VENV   ?= .venv
PYTHON := $(VENV)/bin/python
CARGO  ?= cargo

.PHONY: test test-stats setup-stats-bench stats-fixtures bench-stats

# Fixture comparisons against scipy/statsmodels, the A/A peeking simulation,
# the CLI contract: plain cargo test, no Python needed.
test: test-stats

test-stats:
	$(CARGO) test -j2 -p outrider-stats -p outrider-scorer

# Python environment with the pinned scipy/statsmodels (idempotent).
setup-stats-bench: $(VENV)/.stats-ready

$(VENV)/.stats-ready: sidecar-scorer/stats/fixtures/requirements.txt
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q -r sidecar-scorer/stats/fixtures/requirements.txt
	touch $@

# Regenerate the JSON reference cases the Rust tests read.
stats-fixtures: setup-stats-bench
	$(PYTHON) sidecar-scorer/stats/fixtures/generate.py

# Streaming drift 1M x 50, exact forms 100k x 100k beside scipy (same data,
# same run). OPENBLAS_* are unset for this command only: they slow numpy.
bench-stats: setup-stats-bench
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OUTRIDER_PYTHON=$(abspath $(PYTHON)) \
		$(CARGO) bench -j2 -p outrider-stats --bench stats
