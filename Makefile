# Every routine command of the project. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# llama.cpp's native build selects AMX kernels that crash (SIGSEGV) on our machines.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF
# uv from PATH, or a private copy installed on first use (a fresh machine has none).
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)
RUN := $(UV) run --frozen

.PHONY: help setup run demo test test-fast lint fmt bench reliability images clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(CURDIR)/.tools/bin/uv:
	python3 -m venv .tools && .tools/bin/pip install --quiet uv

setup: $(UV) ## install the locked environment into .venv (first time: compiles the local LLM)
	$(UV) sync --locked

run: setup ## start the whole platform locally (moto, queues, LLM, ingest, worker, qa-sync, receiver)
	$(RUN) python -m devstack run

demo: ## post a realistic request to `make run`'s stack and print the feedback that comes back
	$(RUN) python -m devstack demo

test: setup ## the whole suite, slow tests included (what CI runs)
	$(RUN) pytest

test-fast: setup ## the suite without tests marked slow
	$(RUN) pytest -m "not slow"

lint: setup ## ruff (lint and format check) and mypy --strict
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy

fmt: setup ## apply ruff's fixes and formatting
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

clean: ## remove local state (.run/ logs and data, caches)
	rm -rf .run .pytest_cache .mypy_cache .ruff_cache
