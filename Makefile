# The lab module. `make run`, `make check` and `make test` work on a fresh machine: they create
# .venv from pyproject.toml when it is missing or older than pyproject.toml, then run.
# `make system-deps` installs the Debian packages the browser, serial and PDF tests need; it is
# the only target that calls apt-get, and only when it is asked for (CI does: .ci/run).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test check lint typecheck pytest pytest-fast bench drill system-deps clean

# The .pth line puts the checkout on the venv's path, so its folders outside the wheel (testkit/
# above all) import from anywhere: `lab demo run` plays its day with the test kit.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/python -c 'import pathlib, sys, sysconfig; pathlib.Path(sysconfig.get_paths()["purelib"], "lab-checkout.pth").write_text(sys.argv[1] + "\n")' "$(CURDIR)"
	touch $(STAMP)

# Debian packages the tests use: chromium (browser tests through Playwright's executable_path),
# socat (serial pseudo-terminal pairs), DejaVu fonts (Norwegian and Sami letters in PDFs) and
# poppler-utils (pdftoppm, to look at rendered PDFs).
system-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v socat >/dev/null 2>&1 || missing="$$missing socat"; \
	command -v pdftoppm >/dev/null 2>&1 || missing="$$missing poppler-utils"; \
	test -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf || missing="$$missing fonts-dejavu-core"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing Debian packages:$$missing (install them to run every test)"; fi; \
	fi

run: $(STAMP)
	LAB_DEMO=$${LAB_DEMO:-1} $(BIN)/lab serve

lint: $(STAMP)
	$(BIN)/ruff check lab instruments testkit tests migrations bench drills
	$(BIN)/ruff format --check lab instruments testkit tests migrations bench drills
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q

# The inner loop: every test that needs no browser, no embedded PostgreSQL and no long run.
pytest-fast: $(STAMP)
	$(BIN)/pytest -q -m 'not browser and not embedded and not slow'

test: lint typecheck pytest

check: lint typecheck pytest-fast

bench: $(STAMP)
	$(BIN)/python -m bench

# Fault drills (drills/): kill, PostgreSQL restart, record down, noisy serial line, fuzzing.
drill: $(STAMP)
	$(BIN)/python -m drills

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
