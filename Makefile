# segbench's two commands; each sets up .venv on first use and reuses it while it is current:
#   make bench   the main job: the demo model on the default cases, Dice and speed-up gates
#   make test    the unit tests (benchmarks skipped), the whole suite
#   make test-fast  the same without the tests marked slow (whole plugin sessions on real models)
#   make lint    ruff (check and format) and mypy
# The environment is (re)installed when pyproject.toml or constraints-cpu.txt changed since the
# last install (the stamp $(VENV)/.segbench-installed). Pass pytest arguments with ARGS="...".
#
# CPU torch (the version pinned in constraints-cpu.txt) comes alone (--no-deps) from PyTorch's
# CPU index: on PyPI that version is the CUDA build. Its dependencies, and everything else, come
# from PyPI. TORCH_INDEX= (empty) takes torch from pip's configured indexes instead. When the
# index cannot be reached, pip warns, retries (TORCH_PIP_NET) and goes on with the other sources
# pip is configured with (find-links, extra indexes), if any.

PYTHON ?= python3
VENV ?= .venv
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_PIP_NET ?= --retries 2 --timeout 15
EXTRAS ?= cpu,dev
ARGS ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.segbench-installed
PIP := $(BIN)/python -m pip

.PHONY: bench test test-fast lint install clean-venv

bench: $(STAMP)
	$(BIN)/pytest --benchmark-only $(ARGS)

test: $(STAMP)
	$(BIN)/pytest --benchmark-skip $(ARGS)

test-fast: $(STAMP)
	$(BIN)/pytest --benchmark-skip -m "not slow" $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests scripts conftest.py
	$(BIN)/ruff format --check src tests scripts conftest.py
	$(BIN)/mypy src

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml constraints-cpu.txt | $(BIN)/python
	$(PIP) install $(TORCH_PIP_NET) --no-deps -c constraints-cpu.txt \
		$(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) torch
	$(PIP) install -c constraints-cpu.txt -e ".[$(EXTRAS)]"
	touch $@

clean-venv:
	rm -rf $(VENV)
