# Tidegate: `make serve` starts the gateway on embedded defaults, `make test` runs the suite.
# Both install what is missing into .venv first (torch==2.13.0 is the CPU build on this disk).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tidegate-installed

.PHONY: install serve test test-services test-fast lint bench clean

install: $(STAMP)

# The stamp holds pyproject.toml's hash: a fresh clone (newer mtime) sharing a venv that was
# installed from the same pyproject.toml does not reinstall. A linked .venv (shared with another
# checkout) is never reinstalled from here: pip -e would repoint it at this clone.
$(STAMP): pyproject.toml
	@hash=$$(sha256sum pyproject.toml | cut -d' ' -f1); \
	if [ -x $(PY) ] && [ "$$(cat $(STAMP) 2>/dev/null)" = "$$hash" ]; then touch $(STAMP); exit 0; fi; \
	if [ -L $(VENV) ] && [ -x $(PY) ]; then \
	  echo "$(VENV) links to a shared venv: not reinstalling it here (that would point its editable install at this checkout); run make install where it lives"; \
	  touch $(STAMP); exit 0; fi; \
	set -e; test -x $(PY) || $(PYTHON) -m venv $(VENV); \
	$(PY) -m pip install -q --upgrade pip; \
	$(PY) -m pip install -q torch==2.13.0; \
	$(PY) -m pip install -q -e '.[test]'; \
	echo "$$hash" > $(STAMP)

# One machine, one trusted user: async callbacks may go to a receiver on localhost (off by
# default, where tenants' callback URLs must not reach the internal network)
serve: $(STAMP)
	TIDEGATE_ASYNC_QUEUE__CALLBACK_ALLOW_PRIVATE=true $(VENV)/bin/tidegate serve

# Two pytest workers (pytest-xdist): most tests wait on real servers and subprocesses, so two
# keep both cores busy; a file's tests stay on one worker (module fixtures export models once).
# Files go out longest first (tests/conftest.py, from tests/support/file_seconds.json): xdist's
# own reorder (by number of tests) left long files for the end, on one worker while the other idled.
# TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 2
test: $(STAMP) test-services lint
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# ruff (lint + format check) over everything; mypy over policies/ and the seams (pyproject.toml)
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

# The ledger and shared rate-limit tests run a real PostgreSQL and redis-server on loopback;
# the deployment test checks the Prometheus files with promtool (Debian's prometheus package).
test-services:
	@command -v redis-server >/dev/null && { command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || \
	  { (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql redis-server) >/dev/null 2>&1 || \
	    echo "warning: could not install postgresql/redis-server: their tests will be skipped"; }
	@command -v promtool >/dev/null || \
	  { (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus) >/dev/null 2>&1 || \
	    echo "warning: could not install promtool (Debian's prometheus): the deployment test checks structure only"; }

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# Ray Serve (the baseline in gateway_overhead.py) lives in its own venv: it pins its own web stack.
RAY_VENV := .venv-ray
$(RAY_VENV)/.installed:
	$(PYTHON) -m venv $(RAY_VENV)
	$(RAY_VENV)/bin/pip install -q torch==2.13.0 numpy 'ray[serve]'
	@touch $@

bench: $(STAMP)
	-$(MAKE) $(RAY_VENV)/.installed
	$(PY) ops/bench/gateway_overhead.py
	$(PY) ops/bench/burst_scaling.py
	$(PY) ops/bench/route_speed.py
	$(PY) ops/bench/autoscale_e2e.py

clean:
	rm -rf $(VENV) $(RAY_VENV) .pytest_cache build *.egg-info
