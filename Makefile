# The README's commands. Each target bootstraps first, so every one works on a fresh clone.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
ENV := source .venv/kdmarl_env.sh
COLCON_BUILD := colcon build --event-handlers console_cohesion- summary+
.PHONY: bootstrap build test demo bench lint clean grf

bootstrap:
	@bash scripts/bootstrap.sh

build: bootstrap
	@$(ENV) && $(COLCON_BUILD)

# bootstrap, build, run every package's tests, print the JUnit totals last; non-zero on any failure.
test: build
	@$(ENV) && rm -rf build/*/pytest.xml build/*/test_results && \
	  { colcon test --event-handlers console_direct+ || true; } && \
	  { colcon test-result --verbose || true; } && \
	  python scripts/test_summary.py .

# bootstrap, build, and the main job on the embedded default (see README: "What make demo does").
demo: build
	@$(ENV) && bash scripts/demo.sh

# Benchmarks (performance targets live here, never in tests): writes bench/results/*.json.
bench: build
	@$(ENV) && bash scripts/bench.sh

# Optional: Google Research Football into the venv (apt packages when root, a ~9 min build once; docs/football.md).
grf: bootstrap
	@bash scripts/setup_grf.sh

lint: bootstrap
	@$(ENV) && ruff check src scripts bench

clean:
	rm -rf build install log
