# One entry point for dev tasks; CI (.ci/run) calls these too.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## run: the daemon on the current directory (default index and socket; Ctrl-C stops it)
run: install
	$(BIN)/freshd serve .

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check service client tests bench
	$(BIN)/ruff format --check service client tests bench
	$(BIN)/mypy

bench: install
	$(BIN)/python bench/bench_index.py
	$(BIN)/python bench/bench_daemon.py
	$(BIN)/python bench/bench_client.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

docs: install
	$(BIN)/python docs/gen_cli.py
