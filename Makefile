# The commands the README and CI use. Everything installs from this repository's own files.
#   make demo        set up, then the main job: deploy a customer into a local AWS emulator
#                    and exercise it end to end (make demo-down stops it)
#   make test        set up, then run the whole test suite
SHELL := /bin/bash
VENV := .venv
PYTHON := $(VENV)/bin/python
CUSTOMER ?= acme

# The pinned CDK CLI and Node 22 (node_modules) and the venv's python3 come first on PATH, so
# cdk.json's "python3 app.py" runs in the venv. No telemetry, no notices: nothing leaves the host.
export PATH := $(CURDIR)/node_modules/.bin:$(CURDIR)/$(VENV)/bin:$(PATH)
export CDK_DISABLE_CLI_TELEMETRY := true
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 1

.PHONY: setup demo demo-down synth synth-all test lint matrix scan clean

setup: $(VENV)/.installed node_modules/.installed security/node_modules/.installed \
	.venv-checkov/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

# The IAM policy evaluator of the access matrix (test-only; AGPL, never shipped).
security/node_modules/.installed: security/package.json security/package-lock.json
	npm ci --prefix security --no-audit --no-fund
	touch $@

# checkov pins an old boto3, so it gets its own venv.
.venv-checkov/.installed: security/requirements-checkov.txt $(VENV)/.installed
	$(PYTHON) -m security.scanners --setup

demo: setup
	$(PYTHON) -m localrun up --customer $(CUSTOMER)

demo-down:
	$(PYTHON) -m localrun down

synth: setup
	cdk synth CustomerStack -c customer=$(CUSTOMER) --no-notices --quiet
	@echo "Synthesized customer '$(CUSTOMER)' offline, compliance gate passed:"
	@echo "  template:          cdk.out/CustomerStack.template.json"
	@echo "  compliance report: $$($(PYTHON) -m stacks.compliance cdk.out)"

synth-all: setup
	cdk synth -c customer=all --no-notices --quiet

test: setup
	$(PYTHON) -m pytest

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy stacks app.py admin localaws localrun lambdas/key_rotation

matrix: setup
	$(PYTHON) -m security.access_matrix

scan: setup
	$(PYTHON) -m security.scanners

clean:
	rm -rf cdk.out .pytest_cache .mypy_cache .ruff_cache
