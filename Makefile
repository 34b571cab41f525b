# The two commands a new user needs: `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
export COUNTYLAKE_HOME ?= $(CURDIR)/data

.PHONY: venv demo demo-celery test lint bench clean browser

$(BIN)/countylake: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "needs $(PYTHON) on PATH"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(BIN)/countylake

demo: venv
	$(BIN)/countylake demo

# The same DAGs on the CeleryExecutor (Redis broker, PostgreSQL metadata, two workers), with the
# Airflow UI up until Ctrl-C; ARGS=--exit stops after the runs (python -m etl.celery_stack -h).
demo-celery: venv
	$(BIN)/python -m etl.celery_stack $(ARGS)

test: venv lint browser
	$(BIN)/pytest

# Headless Chromium for the report screenshots the tests check (Debian's package, as root).
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -q \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; } \
	  || echo "chromium is not installed: the screenshot tests will be skipped"

lint: venv
	$(BIN)/ruff check etl dags tests
	$(BIN)/ruff format --check etl dags tests

bench: venv
	$(BIN)/python -m etl.bench
	$(BIN)/python -m etl.bench_quality
	$(BIN)/python -m etl.bench_warehouse
	$(BIN)/python -m etl.bench_county

clean:
	rm -rf $(COUNTYLAKE_HOME)
