# The two commands of the README contract: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev
# Every dependency's exact version (`make lock` refreshes it from pyproject.toml's ranges).
LOCK := constraints.txt

.PHONY: run test lint format docs lock crash chaos bench bench-full clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e .
	touch $@

$(DEVSTAMP): pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[dev]'
	touch $@ $(STAMP)

# A fresh environment takes the newest versions pyproject.toml allows; their exact versions
# become the lock. Commit constraints.txt with the pyproject.toml change that needed it.
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip
	.venv-lock/bin/python -m pip install --quiet -e '.[dev]'
	.venv-lock/bin/python -m pip freeze --exclude-editable | sort -f > $(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf .venv-lock

# The C allocator, whose freed memory wabot gives back (README, Deploying); yours if set.
run: export PYTHONMALLOC ?= malloc
run: $(STAMP)
	exec $(BIN)/wabot serve

lint: $(DEVSTAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(DEVSTAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: $(DEVSTAMP) lint
	@$(PROMTOOL_CHECK)
	@$(CHROMIUM_CHECK)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# The README's settings tables and .env.example, from actors/settings_doc.py.
docs: $(STAMP)
	$(BIN)/python -m actors.settings_doc .

crash: $(DEVSTAMP)
	WABOT_CRASH=1 $(BIN)/python -m pytest -q -s tests -k crash

chaos: $(DEVSTAMP)
	WABOT_CHAOS=1 $(BIN)/python -m pytest -q -s tests -k "(chaos or crash or fuzz or outage or resume) and not browser"

# wrk (Debian package) drives the closed-loop ingest runs; without it those rows are skipped
# and the runner says so (the open-loop generator is ours and always runs).
WRK_CHECK = command -v wrk >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
	(apt-get install -y -qq wrk >/dev/null 2>&1 || \
	 (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq wrk >/dev/null 2>&1)); } || \
	echo "wrk is not installed and could not be installed: closed-loop ingest rows are skipped"

# promtool (in Debian's prometheus package) checks /metrics in tests/test_metrics.py; without
# it that test is skipped, and fails under CI=true. Installed without recommends; where a
# service manager runs, the package also enables a Prometheus server (stop it if unwanted).
PROMTOOL_CHECK = command -v promtool >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
	(DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus \
	 >/dev/null 2>&1 || (apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive \
	 apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1)); } || \
	echo "promtool is not installed and could not be installed: the promtool test is skipped"

# Debian's chromium (and a text font) for the console's browser tests (tests/
# test_console_browser.py, driven by playwright, which never downloads a browser of its own);
# without it those tests are skipped, and fail under CI=true.
CHROMIUM_CHECK = command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
	(DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium \
	 fonts-liberation >/dev/null 2>&1 || (apt-get update -qq >/dev/null 2>&1 && \
	 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium \
	 fonts-liberation >/dev/null 2>&1)); } || \
	echo "chromium is not installed and could not be installed: the console's browser tests are skipped"

bench: $(DEVSTAMP)
	@$(WRK_CHECK)
	$(BIN)/python -m bench --quick

bench-full: $(DEVSTAMP)
	@$(WRK_CHECK)
	$(BIN)/python -m bench --full

clean:
	rm -rf $(VENV) .venv-lock .pytest_cache .ruff_cache
