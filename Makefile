# The two commands a newcomer needs: `make demo` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test test-fast lint bench bench-long chaos proto stack-up stack-down clean emails

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Start the embedded stack, the producer and the consumer; send orders and watch them walk.
demo: install
	$(PY) -m admin demo

## Lint, type-check, then every test (unit, integration, e2e) on the embedded stack.
test: install lint
	$(PY) -m pytest -q tests

test-fast: install
	$(PY) -m pytest -q tests/unit

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

## The five e-mails of a sample order as HTML and PNG in docs/emails (needs chromium).
emails: install
	$(PY) -m pedidos.adapters.email.preview --out docs/emails

bench: install
	$(PY) -m bench

bench-long: install
	$(PY) -m bench --long

chaos: install
	$(PY) -m pytest -q -m chaos tests --chaos-orders 2000

## Regenerate the gRPC stubs after editing protos/ (a test fails when they are stale).
proto: install
	$(PY) -m pedidos.wire.protobuf_stubs

stack-up: install
	$(PY) -m admin stack up

stack-down: install
	$(PY) -m admin stack down

clean:
	-$(PY) -m admin stack down
	rm -rf $(VENV) .stack .pytest_cache .mypy_cache .ruff_cache
