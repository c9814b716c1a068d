# Two entry points, both self-contained on a fresh machine:
#   make quickstart  - create .venv, install kitchen[hf] (CPU torch), train the bundled recipe
#   make test        - create .venv, install everything the tests need, run the test suite
# torch is pinned in constraints.txt (CPU build; see that file for why).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
CONSTRAINTS := -c constraints.txt
EXTRAS_MAIN := hf
EXTRAS_TEST := hf,dev,server,remote,tensorboard,mlflow,otel,data,ray,s3,hub,wandb,gguf,astgrep,cookbook
# tests/cookbook runs this release unchanged; --no-deps because its tml-renderers
# requirement is not on PyPI (the `cookbook` extra installs everything else it needs).
COOKBOOK := tinker-cookbook==0.6.1

.PHONY: quickstart test lint typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools wheel >/dev/null

# Fails the install if a CUDA build of torch slipped in (see constraints.txt).
CHECK_CPU_TORCH := $(BIN)/python -c "import torch, sys; sys.exit(0 if torch.version.cuda is None else 'torch ' + torch.__version__ + ' is a CUDA build; constraints.txt pins the CPU wheel')"

$(VENV)/.main-installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) install $(CONSTRAINTS) -e ".[$(EXTRAS_MAIN)]"
	$(CHECK_CPU_TORCH)
	touch $@

$(VENV)/.test-installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) install $(CONSTRAINTS) -e ".[$(EXTRAS_TEST)]"
	$(PIP) install $(CONSTRAINTS) --no-deps "$(COOKBOOK)"
	$(CHECK_CPU_TORCH)
	touch $@ $(VENV)/.main-installed

quickstart: $(VENV)/.main-installed
	$(BIN)/kitchen run quickstart --adapters hf

test: $(VENV)/.test-installed
	$(BIN)/python -m pytest -q

lint: $(VENV)/.test-installed
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/mypy

bench: $(VENV)/.test-installed
	$(BIN)/python benchmarks/runner_overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
