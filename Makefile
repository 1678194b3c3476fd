# The two commands: `make demo` and `make test`. Both create and use .venv.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export DO_NOT_TRACK := true
export MLFLOW_DISABLE_TELEMETRY := true
export RAY_USAGE_STATS_ENABLED := 0
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test lint typecheck pytest install clean lock promtool browser demo-quick

$(BIN)/python:
	@command -v $(PY) >/dev/null 2>&1 || { echo "need $(PY) on PATH"; exit 1; }
	$(PY) -m venv $(VENV)

# Installs the locked environment once; re-runs only when the lock or pyproject change.
$(VENV)/.installed: requirements.lock pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/steward demo

lint: install
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/ruff format --check src tests benchmarks tools

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

# Re-resolve and pin every dependency with sha256 hashes (needs the registries).
lock:
	rm -rf .venv-lock .lock-dists && $(PY) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet -e '.[llm,ray,s3,bench,dev]'
	.venv-lock/bin/pip freeze --all --exclude-editable | grep -v -E '^(steward|pip)==' > requirements.lock
	.venv-lock/bin/pip download --quiet --no-deps -r requirements.lock -d .lock-dists
	.venv-lock/bin/python tools/hash_lock.py requirements.lock .lock-dists
	rm -rf .venv-lock .lock-dists

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
