# The two commands a new user runs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
STACK_ENV := .demo/stack.env

.PHONY: demo stack run test lint unit integration bench redis-server clean
.PHONY: lock docker-compose promtool

# Every dependency from the lock (exact versions, hashes checked), then the project itself.
# The installer is uv, itself installed by pip from requirements-uv.lock (pinned, hashes
# checked): it installs the dev lock in seconds, where pip spends over a minute of CPU
# unpacking and byte-compiling its ~130 packages one after another.
$(STAMP): pyproject.toml requirements-dev.lock requirements-uv.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
	  --require-hashes --no-deps -r requirements-uv.lock
	$(UV_INSTALL) --require-hashes --no-deps -r requirements-dev.lock
	$(UV_INSTALL) --no-deps -e .
	touch $(STAMP)

# Regenerates the lock files from pyproject.toml with uv (and requirements-uv.lock, the
# installer's own pin, from UV_VERSION), keeping the versions they pin unless pyproject.toml's ranges exclude them; `make lock UPGRADE=1` takes the newest
# versions the ranges allow. The runtime and Flower locks are constrained to the dev lock's
# versions, so the image runs what the tests ran.
UV_VERSION := 0.13.9
# --compile-bytecode, as pip does: where PYTHONDONTWRITEBYTECODE is set, nothing would ever
# write the bytecode, and every process the suite starts would compile what it imports.
UV_INSTALL = $(BIN)/uv pip install --quiet --python $(BIN)/python --compile-bytecode
COMPILE := $(BIN)/uv pip compile --quiet --generate-hashes --python-version 3.11 \
	--python-platform linux --custom-compile-command "make lock"
LOCK := $(COMPILE) pyproject.toml $(if $(UPGRADE),--upgrade)
lock:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet --disable-pip-version-check \
	  uv==$(UV_VERSION)
	echo "uv==$(UV_VERSION)" | $(COMPILE) - -o requirements-uv.lock
	$(LOCK) --extra dev --extra demo -o requirements-dev.lock
	$(LOCK) -c requirements-dev.lock -o requirements.lock
	$(LOCK) --extra flower -c requirements-dev.lock -o requirements-flower.lock

# Tests and the demo start their own private redis-server; install it when missing.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; \
	  else \
	    echo "redis-server is missing: install it (Debian/Ubuntu: sudo apt-get install redis-server," \
	         "macOS: brew install redis), then run this again." >&2; exit 1; \
	  fi; }

# The Sentinel failover test (tests/integration/test_sentinel.py) starts three redis-sentinel.
.PHONY: redis-sentinel
redis-sentinel:
	@command -v redis-sentinel >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-sentinel; \
	  else \
	    echo "redis-sentinel is missing: install it (Debian/Ubuntu: sudo apt-get install" \
	         "redis-sentinel, macOS: brew install redis), then run this again." >&2; exit 1; \
	  fi; }

# `make test` validates docker-compose.yml (docker-compose v1 needs no daemon for `config`)
# and config/alerts.yml (promtool); install them when missing, as for redis-server.
docker-compose: APT_PACKAGE := docker-compose
promtool: APT_PACKAGE := prometheus
docker-compose promtool:
	@command -v $@ >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends $(APT_PACKAGE); \
	  else \
	    echo "$@ is missing: install it (Debian/Ubuntu: sudo apt-get install $(APT_PACKAGE))," \
	         "then run this again." >&2; exit 1; \
	  fi; }

# The dashboard's browser test (tests/integration/test_dashboard_browser.py) drives Debian's
# chromium through its chromedriver; Selenium is told never to download a browser or driver.
.PHONY: chromium
chromium:
	@{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends chromium chromium-driver; \
	  else \
	    echo "chromium is missing: install it (Debian/Ubuntu: sudo apt-get install chromium" \
	         "chromium-driver), then run this again." >&2; exit 1; \
	  fi; }

demo: $(STAMP) redis-server
	$(BIN)/lipsync demo

# The local stack (redis-server, S3 server, Akool simulator) in the foreground until Ctrl-C;
# it writes the environment a worker needs to $(STACK_ENV).
stack: $(STAMP) redis-server
	$(BIN)/python -m worker.dev.stack --env-file $(STACK_ENV)

# The Procfile (worker, archive, beat, web) against the stack `make stack` runs in another terminal.
# The Procfile calls bare `celery` and `python`: the venv's come first on PATH. honcho reads
# only the files given with -e (not .env), and their values win over the shell's.
run: $(STAMP)
	@test -f $(STACK_ENV) || { echo "$(STACK_ENV) is missing: run \`make stack\` in another terminal first." >&2; exit 1; }
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start -e $(STACK_ENV)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

integration: $(STAMP) redis-server redis-sentinel
	$(BIN)/python -m pytest -q -n $(TEST_PROCESSES) --dist loadgroup tests/integration

# The suite runs on TEST_PROCESSES pytest processes at once (pytest-xdist). The integration
# tier mostly waits on the processes it starts, so more test processes than cores keep both
# cores of a small machine busy; every test owns its ports, Redis databases and temporary
# directories. Each test goes to whichever process is free, except that the tests sharing a
# module-scoped fixture (a deployment, a built wheel, a browser) stay on one process
# (tests/conftest.py), so the fixture is set up once.
TEST_PROCESSES ?= 4
test: lint redis-server redis-sentinel docker-compose promtool chromium
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_PROCESSES) --dist loadgroup tests

bench: $(STAMP) redis-server
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
