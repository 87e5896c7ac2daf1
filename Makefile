# beardnet: `make test` and `make demo` are the two commands (see README.md).
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
LOOPBACK := infra/loopback.sh

.PHONY: venv test test-fast demo bench bench-quick lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --upgrade pip
	$(VENV)/bin/python -m pip install -e '.[dev]'
	touch $(STAMP)

test: venv
	$(LOOPBACK) $(VENV)/bin/python -m pytest -q

test-fast: venv
	$(LOOPBACK) $(VENV)/bin/python -m pytest -q -m 'not slow'

demo: venv
	$(LOOPBACK) $(VENV)/bin/beardnet demo

bench: venv
	$(LOOPBACK) $(VENV)/bin/beardnet bench

bench-quick: venv
	$(LOOPBACK) $(VENV)/bin/beardnet bench --quick

lint: venv
	$(VENV)/bin/ruff check beardnet jobs tests

clean:
	rm -rf .pytest_cache .ruff_cache build dist *.egg-info .demo .bench
	find . -name __pycache__ -type d -not -path './$(VENV)/*' -prune -exec rm -rf {} +
