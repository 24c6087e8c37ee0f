# The lab module. `make run`, `make check` and `make test` work on a fresh machine: they create
# .venv from requirements.lock (every dependency pinned with its hashes; `make lock` remakes it
# from pyproject.toml) when it is missing or older than either, then run.
# `make system-deps` installs the Debian packages the browser, serial and PDF tests need; it is
# the only target that calls apt-get, and only when it is asked for (CI does: .ci/run).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test check lint typecheck audit lock pytest pytest-fast bench drill system-deps clean

# The .pth line puts the checkout on the venv's path, so its folders outside the wheel (testkit/
# above all) import from anywhere: `lab demo run` plays its day with the test kit.
# pip installs exactly the locked files (a changed or swapped file fails its hash), then the
# lab module itself without dependencies; `pip check` then fails if pyproject.toml names a
# dependency the lock lacks (run `make lock`).
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/pip check || { echo "requirements.lock lacks a dependency of pyproject.toml: run make lock"; exit 1; }
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

# requirements.lock from pyproject.toml (dev tools included) by uv, keeping the pins already
# there; `make lock LOCK_ARGS=--upgrade` moves everything to the newest releases.
lock:
	test -x .lock-venv/bin/uv || { $(PYTHON) -m venv .lock-venv && .lock-venv/bin/pip install --quiet uv; }
	.lock-venv/bin/uv pip compile pyproject.toml --extra dev --generate-hashes --no-header \
	  --python-version 3.11 --python-platform x86_64-manylinux_2_28 $(LOCK_ARGS) -o requirements.lock

# Known vulnerabilities in the locked dependencies: fails on one; with no advisory data
# reachable it says so in a banner and passes (LAB_AUDIT_REQUIRED=1 makes that fail too).
audit: $(STAMP)
	$(BIN)/python tools/audit_dependencies.py

run: $(STAMP)
	LAB_DEMO=$${LAB_DEMO:-1} $(BIN)/lab serve

lint: $(STAMP)
	$(BIN)/ruff check lab instruments testkit tests migrations bench drills tools
	$(BIN)/ruff format --check lab instruments testkit tests migrations bench drills tools
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q

# The inner loop: every test that needs no browser, no embedded PostgreSQL and no long run.
pytest-fast: $(STAMP)
	$(BIN)/pytest -q -m 'not browser and not embedded and not slow'

test: lint typecheck audit pytest

check: lint typecheck audit pytest-fast

bench: $(STAMP)
	$(BIN)/python -m bench

# Fault drills (drills/): kill, PostgreSQL restart, record down, noisy serial line, fuzzing.
drill: $(STAMP)
	$(BIN)/python -m drills

clean:
	rm -rf $(VENV) .lock-venv var .pytest_cache .mypy_cache .ruff_cache .hypothesis
