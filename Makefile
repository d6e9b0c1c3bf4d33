# The two commands a newcomer runs: `make demo` and `make test`.  Both create .venv and install
# sigfuse into it from PyPI; nothing is installed system-wide.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: demo test bench doctor venv clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall when the package metadata changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@ $(VENV)/.installed

venv: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/sigfuse trace --in host/data/example_stream.jsonl

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(BIN)/sigfuse bench --json benchmarks/results/reference.json

doctor: $(VENV)/.installed
	$(BIN)/sigfuse doctor

clean:
	rm -rf build .pytest_cache .hypothesis
