# The two set-up commands of the README: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
AS_OF ?= 2026-11-20

.PHONY: run test install install-test bench bench-durable sample clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,durable]'

run: install
	$(BIN)/crm-engine run --policies policies --inbox inbox --outbox outbox --as-of $(AS_OF)

test: install-test
	$(BIN)/python -m pytest -q

bench: install-test
	$(BIN)/python bench/run_bench.py

sample: install
	$(BIN)/crm-engine sample --customers 500 --seed 7 --out inbox

clean:
	rm -rf $(VENV) build *.egg-info

bench-durable: install-test
	$(BIN)/python bench/durable_bench.py
