# The two commands a new user needs: `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
export COUNTYLAKE_HOME ?= $(CURDIR)/data

.PHONY: venv demo test lint bench clean

$(BIN)/countylake: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "needs $(PYTHON) on PATH"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(BIN)/countylake

demo: venv
	$(BIN)/countylake demo

test: venv lint
	$(BIN)/pytest

lint: venv
	$(BIN)/ruff check etl dags tests
	$(BIN)/ruff format --check etl dags tests

bench: venv
	$(BIN)/python -m etl.bench
	$(BIN)/python -m etl.bench_quality

clean:
	rm -rf $(COUNTYLAKE_HOME)
