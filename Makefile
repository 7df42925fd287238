PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TEST_WORKERS ?= 2
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: install demo lint test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	# torch/torchvision first, pinned to the releases pip finds on this machine's disk
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tlsweep run sweeps/demo.yaml

# formatting, lint and types first (cached in .ruff_cache and .mypy_cache: seconds once warm), then the tests
lint: $(STAMP)
	$(BIN)/ruff format --check tlsweep tests bench
	$(BIN)/ruff check tlsweep tests bench
	$(BIN)/mypy

test: lint
	RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=disabled WANDB_MODE=disabled $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

clean:
	rm -rf $(VENV) runs .tlsweep-cache .mypy_cache .ruff_cache
