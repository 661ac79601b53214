# One entry point for dev tasks; CI (.ci/run) calls these too.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-lowest soak lint bench docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[daemon,dev]'
	touch $(STAMP)

install: $(STAMP)

## run: the daemon on your code, e.g. make run ROOT=~/src/yourcode (default index and
## socket; Ctrl-C stops it; the index remembers ROOT: `.venv/bin/freshd serve` alone reuses it)
ifneq ($(filter run,$(MAKECMDGOALS)),)
ifeq ($(strip $(ROOT)),)
$(error make run needs the directory to watch: make run ROOT=~/src/yourcode)
endif
ifeq ($(wildcard $(ROOT)/.),)
$(error make run: ROOT=$(ROOT) is not a directory)
endif
endif
run: install
	$(BIN)/freshd serve $(ROOT)

test: install
	$(BIN)/pytest

## test-lowest: the suite against the lowest versions pyproject.toml allows (uv's lowest-direct)
LOWEST ?= .venv-lowest
$(LOWEST)/.installed: pyproject.toml $(STAMP)
	$(BIN)/uv venv --quiet --seed --allow-existing --python $(BIN)/python $(LOWEST)
	$(BIN)/uv pip install --quiet --python $(LOWEST)/bin/python --resolution lowest-direct \
		-e '.[daemon,dev]'
	touch $@

# The Docker images install their own freshd and uv: the floors below do not reach them.
test-lowest: $(LOWEST)/.installed
	$(LOWEST)/bin/pytest --ignore=tests/test_docker.py

## soak: the long seeded reliability runs (churn against the oracle, kill -9 loops); SEED=n reproduces one
soak: install
	$(BIN)/pytest -m soak $(if $(SEED),--soak-seed=$(SEED))

lint: install
	$(BIN)/ruff check service client tests bench
	$(BIN)/ruff format --check service client tests bench
	$(BIN)/mypy

bench: install
	$(BIN)/python bench/bench_index.py
	$(BIN)/python bench/bench_daemon.py
	$(BIN)/python bench/bench_client.py
	$(BIN)/python bench/bench_asgi.py
	$(BIN)/python bench/bench_cli.py
	$(BIN)/python bench/bench_load.py
	$(BIN)/python bench/bench_uv.py
	$(BIN)/python bench/bench_canary.py
	$(BIN)/python bench/bench_scrub.py
	$(BIN)/python bench/bench_ci.py
	$(BIN)/python bench/bench_links.py

clean:
	rm -rf $(VENV) $(LOWEST) .pytest_cache .mypy_cache .ruff_cache

docs: install
	$(BIN)/python docs/gen_cli.py
