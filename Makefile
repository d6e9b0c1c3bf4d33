# The two commands a newcomer runs: `make demo` and `make test`.  Both create .venv and install
# sigfuse into it from PyPI; nothing is installed system-wide.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=
# One pytest worker per core: the Verilator builds and the long simulations overlap instead of
# queueing (builds are shared between workers through file locks).  PYTEST_XDIST= runs serially.
PYTEST_XDIST ?= -n auto --dist worksteal

.PHONY: demo test bench doctor venv clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall when the package metadata or the native link codec's sources change (the editable
# install compiles firmware/src into sigfuse._linkcodec; see setup.py).
INSTALL_DEPS := pyproject.toml setup.py host/_native_build.py $(wildcard firmware/src/*.c firmware/include/*.h)

$(VENV)/.installed: $(INSTALL_DEPS) | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.installed-dev: $(INSTALL_DEPS) | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@ $(VENV)/.installed

venv: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/sigfuse demo --duration 20

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(BIN)/sigfuse bench --json benchmarks/results/reference.json
	$(BIN)/python benchmarks/execution.py --json benchmarks/results/execution.json
	$(BIN)/python benchmarks/orchestrator.py --json benchmarks/results/orchestrator.json

doctor: $(VENV)/.installed
	$(BIN)/sigfuse doctor

clean:
	rm -rf build .pytest_cache .hypothesis
