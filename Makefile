# Set-up and checks. `make demo` and `make test` are all a fresh machine needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv services services-down demo lint test faults bench clean

venv: $(STAMP)

# The editable install maps each top-level package when it is made: a package added later (core/ was) needs
# it made again, so each package's __init__.py is a prerequisite too.
$(STAMP): pyproject.toml $(wildcard */__init__.py)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

services:
	@scripts/testbed up

services-down:
	@scripts/testbed down

demo: venv services
	$(BIN)/python -m testbed.demo

# Style and the floors (pyproject.toml: [tool.ruff], [tool.importlinter]; README.md, Layout).
lint: venv
	$(BIN)/ruff check .
	$(BIN)/lint-imports

test: venv services lint
	$(BIN)/python -m pytest --ignore=tests/faults $(PYTEST_ARGS)

# The fault matrix (docs/reliability.md): private servers stopped, hung and restarted; about 11 minutes.
faults: venv services
	$(BIN)/python -m pytest tests/faults $(PYTEST_ARGS)

# Figures, not assertions: one table printed, and kept in .bench/results.json. QUICK=1 for a short run.
bench: venv services
	$(BIN)/python bench/run.py $(if $(QUICK),--quick,)

clean: services-down
	rm -rf .testbed .demo
