# Two entry points for a fresh machine (README quick start): `make serve` and `make test`.
# Each creates the virtual environment it needs on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The local CPU build of torch; installed first so the `train` extra's range is already met
# and pip never pulls the CUDA wheels.
TORCH_SPEC ?= torch==2.13.0

# The model `make serve` runs: GAITID_MODEL_PATH if set, else the shipped trained model
# (models/README.md). The seeded random-initialised `lite` export is a development fallback for
# a checkout without it (the API works; matches mean nothing).
SHIPPED_MODEL := models/gaitid-lmgcs.onnx
# GAITID_MODEL_PRECISION=int8 make serve: its static int8 model instead (models/README.md)
SHIPPED_MODEL_INT8 := models/gaitid-lmgcs.int8.onnx
DEMO_MODEL := .cache/random-init-lite.onnx

# The CPU serving image's environment, built as the Dockerfile's `cpu` stage builds it: the
# pinned requirements, then the project itself without dependencies (tests/deploy runs the
# API from it against PostgreSQL).
SERVE_VENV ?= .venv-serve-cpu
SERVE_SOURCES := $(shell find -L gaitid -name '*.py' -o -name '*.ini' -o -name '*.mako' \
	-o -name '*.html' -o -name '*.js' -o -name '*.css' -o -name '*.svg')

.PHONY: help install-dev test test-all lint serve clean requirements serve-cpu-venv screenshots

help:
	@echo "make serve     set up and run the service on its embedded default (SQLite + local index)"
	@echo "make test      set up the dev environment and run the default test suite"
	@echo "make test-all  also run the slow tests"
	@echo "make lint      ruff + mypy"
	@echo "make screenshots  retake the console's pictures in docs/console/ (browser tests)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The serving pins constrain the dev environment too, so the tests run the exact versions the
# CPU image ships (and a new upstream release cannot make the two drift apart).
$(VENV)/.dev-installed: pyproject.toml requirements/serve-cpu.txt | $(BIN)/python
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -c requirements/serve-cpu.txt -e '.[cpu,train,dev]'
	touch $@

install-dev: $(VENV)/.dev-installed

$(SERVE_VENV)/.installed: requirements/serve-cpu.txt pyproject.toml $(SERVE_SOURCES)
	rm -rf $(SERVE_VENV)
	$(PYTHON) -m venv $(SERVE_VENV)
	$(SERVE_VENV)/bin/python -m pip install -q --upgrade pip
	$(SERVE_VENV)/bin/python -m pip install -q -r requirements/serve-cpu.txt
	$(SERVE_VENV)/bin/python -m pip install -q --no-deps .
	touch $@

serve-cpu-venv: $(SERVE_VENV)/.installed

# Re-pin requirements/serve-cpu.txt from the dev environment (after changing dependencies).
requirements: $(VENV)/.dev-installed
	$(BIN)/python requirements/pin_serve_cpu.py

test: $(VENV)/.dev-installed $(SERVE_VENV)/.installed
	$(BIN)/python -m pytest -q

test-all: $(VENV)/.dev-installed
	$(BIN)/python -m pytest -q -m "not gpu"

serve: $(VENV)/.dev-installed
	@model="$${GAITID_MODEL_PATH:-}"; shipped="$(SHIPPED_MODEL)"; picked=""; \
	if [ "$${GAITID_MODEL_PRECISION:-fp32}" = int8 ]; then shipped="$(SHIPPED_MODEL_INT8)"; fi; \
	if [ -z "$$model" ] && [ -f "$$shipped" ]; then model="$(CURDIR)/$$shipped"; picked=1; fi; \
	if [ -z "$$model" ]; then \
	  model="$(CURDIR)/$(DEMO_MODEL)"; picked=1; \
	  [ -f "$$model" ] || $(BIN)/gaitid export --random-init lite --seed 0 --out "$$model"; \
	  echo "WARNING: $(SHIPPED_MODEL) is missing; serving a random-initialised 'lite' model." \
	       "The API works end to end, but its scores carry no identity information." >&2; \
	fi; \
	if [ -n "$$picked" ]; then unset GAITID_MODEL_PRECISION; fi; \
	GAITID_MODEL_PATH="$$model" exec $(BIN)/gaitid serve --init

# The console's pictures in the README, taken by its browser tests (system Chromium).
screenshots: $(VENV)/.dev-installed
	GAITID_REQUIRE_BROWSER=1 GAITID_SCREENSHOT_DIR="$(CURDIR)/docs/console" \
		$(BIN)/python -m pytest -q tests/service/test_console.py

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/mypy gaitid

clean:
	rm -rf $(VENV) $(SERVE_VENV) .pytest_cache .mypy_cache .ruff_cache
