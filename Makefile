# The two README commands: `make run` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/payguard db upgrade
	$(BIN)/payguard demo seed
	$(BIN)/payguard serve --host 127.0.0.1 --port 8000

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -n 2 -q

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python -m bench.ledger
	$(BIN)/python -m bench.api
	$(BIN)/python -m bench.auth
	$(BIN)/python -m bench.audit
	$(BIN)/python -m bench.crypto
	$(BIN)/python -m bench.risk

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
