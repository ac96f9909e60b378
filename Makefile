# Everything sisu needs on a machine with Python >= 3.11, pip and make.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install demo crashdemo test unit test-integration lint fmt clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

## The main job on the embedded database.
demo: install
	$(BIN)/sisu demo

crashdemo: install
	$(BIN)/sisu crashdemo

## The whole test suite, with lint, types and the policy check.
test: install lint
	$(BIN)/python -m pytest

## The unit tier alone: seconds, no database (a unit test that asks for one fails).
unit: install
	$(BIN)/python -m pytest -q tests/unit

## The integration tier alone (CI runs it again against an external PostgreSQL).
test-integration: install
	$(BIN)/python -m pytest tests/integration

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/sisu policy check

## Format and apply ruff's safe fixes; `make lint` then checks what is left.
fmt: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
