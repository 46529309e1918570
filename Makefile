# The two commands a new user runs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
STACK_ENV := .demo/stack.env

.PHONY: demo stack run test lint unit integration bench redis-server clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

# Tests and the demo start their own private redis-server; install it when missing.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; \
	  else \
	    echo "redis-server is missing: install it (Debian/Ubuntu: sudo apt-get install redis-server," \
	         "macOS: brew install redis), then run this again." >&2; exit 1; \
	  fi; }

demo: $(STAMP) redis-server
	$(BIN)/lipsync demo

# The local stack (redis-server, S3 server, Akool simulator) in the foreground until Ctrl-C;
# it writes the environment a worker needs to $(STACK_ENV).
stack: $(STAMP) redis-server
	$(BIN)/python -m worker.dev.stack --env-file $(STACK_ENV)

# The Procfile (worker, beat, web) against the stack `make stack` runs in another terminal.
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

integration: $(STAMP) redis-server
	$(BIN)/python -m pytest -q tests/integration

test: lint redis-server
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

bench: $(STAMP) redis-server
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
