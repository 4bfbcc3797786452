# Every target bootstraps .venv itself, so a fresh machine with Python >= 3.11 needs nothing else.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run demo test lint bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/ankomst serve

demo: $(STAMP)
	$(BIN)/ankomst demo

# Two pytest-xdist workers, each with a Redis database or an embedded Valkey of its own
# (tests/conftest.py); whichever is free takes the next test. PYTEST_WORKERS=0: one process.
PYTEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	@# arq pins redis<6 in every release; it runs on redis-py 8, so it goes in beside the extra.
	$(BIN)/python -m pip install --quiet --no-deps 'arq>=0.26'
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
