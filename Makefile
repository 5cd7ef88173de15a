# Two entry points for a fresh machine (README quick start): `make serve` and `make test`.
# Each creates the virtual environment it needs on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The local CPU build of torch; installed first so the `train` extra's range is already met
# and pip never pulls the CUDA wheels.
TORCH_SPEC ?= torch==2.13.0

.PHONY: help install-dev test test-all lint serve clean

help:
	@echo "make serve     set up and run the service on its embedded default (SQLite + local index)"
	@echo "make test      set up the dev environment and run the default test suite"
	@echo "make test-all  also run the slow tests"
	@echo "make lint      ruff + mypy"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e '.[cpu,train,dev]'
	touch $@

install-dev: $(VENV)/.dev-installed

test: $(VENV)/.dev-installed
	$(BIN)/python -m pytest -q

test-all: $(VENV)/.dev-installed
	$(BIN)/python -m pytest -q -m "not gpu"

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/mypy gaitid model training service

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
