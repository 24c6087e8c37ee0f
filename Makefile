# The lab module. `make run` and `make test` work on a fresh machine: they create .venv from
# pyproject.toml when it is missing or older than pyproject.toml, then run.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest bench drill browser-deps clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Debian's chromium for the browser tests (Playwright drives it through executable_path).
browser-deps:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium socat >/dev/null; \
	  else echo "chromium is missing: install Debian's chromium package to run the browser tests"; fi; \
	fi

run: $(STAMP)
	LAB_DEMO=$${LAB_DEMO:-1} $(BIN)/lab serve

lint: $(STAMP)
	$(BIN)/ruff check lab instruments tests migrations bench
	$(BIN)/ruff format --check lab instruments tests migrations bench

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) browser-deps
	$(BIN)/pytest -q

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
