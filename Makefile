# The commands the README and CI use. Everything installs from this repository's own files.
#   make demo        set up what the demo needs, then the main job: deploy the audit stack and a
#                    customer into a local AWS emulator and exercise it (make demo-down stops it)
#   make test        set up everything, then run the whole test suite (two workers)
SHELL := /bin/bash
VENV := .venv
PYTHON := $(VENV)/bin/python
UV := $(VENV)/bin/uv
CUSTOMER ?= acme
# Every transitive version is pinned in requirements.lock (make lock rewrites it).
UV_INSTALL := $(UV) pip install --quiet --python $(PYTHON) --constraint requirements.lock

# The pinned CDK CLI and Node 22 (node_modules) and the venv's python3 come first on PATH, so
# cdk.json's "python3 app.py" runs in the venv. No telemetry, no notices: nothing leaves the host.
export PATH := $(CURDIR)/node_modules/.bin:$(CURDIR)/$(VENV)/bin:$(PATH)
export CDK_DISABLE_CLI_TELEMETRY := true
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 1
# Python caches compiled modules (.pyc) unless told not to; some machines and CI images set
# PYTHONDONTWRITEBYTECODE=1, and uv (unlike pip) installs no .pyc. Then every process compiles
# every module it imports, every time (measured: the CDK app's, the emulator's and moto's imports
# 12.5 s instead of 3.6 s; a fresh clone's tests ~16 min of CPU instead of ~13 min 20 s).
# Caching them on first import costs nothing after it.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup setup-demo demo demo-down synth synth-all pipeline-synth pipeline-diff test lint matrix scan partner-tools lock clean

# What the demo needs: the CDK app, the emulator, the client, the CDK CLI and Node 22.
setup-demo: $(VENV)/.demo-installed node_modules/.installed

# Everything: the demo's part, test and lint tools, the IAM policy evaluator, checkov.
setup: setup-demo $(VENV)/.dev-installed security/node_modules/.installed .venv-checkov/.installed

$(UV): requirements-bootstrap.txt
	@echo "==> Python virtual environment $(VENV) with the uv installer"
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r requirements-bootstrap.txt
	touch $@

$(VENV)/.demo-installed: $(UV) requirements.txt requirements-demo.txt requirements.lock \
		pyproject.toml transfer/pyproject.toml
	@echo "==> Python packages for the CDK app, the emulator and the client (requirements-demo.txt)"
	$(UV_INSTALL) -r requirements-demo.txt
	touch $@

$(VENV)/.dev-installed: $(VENV)/.demo-installed requirements-dev.txt requirements.lock
	@echo "==> Test and lint tools (requirements-dev.txt)"
	$(UV_INSTALL) -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	@echo "==> The pinned CDK CLI and Node 22 (package.json)"
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The IAM policy evaluator of the access matrix (test-only; AGPL, never shipped).
security/node_modules/.installed: security/package.json security/package-lock.json
	@echo "==> The IAM policy evaluator for the access matrix (security/package.json)"
	npm ci --prefix security --no-audit --no-fund --loglevel=error
	touch $@

# checkov pins an old boto3, so it gets its own venv.
.venv-checkov/.installed: security/requirements-checkov.txt $(VENV)/.dev-installed
	@echo "==> checkov in its own venv (security/requirements-checkov.txt)"
	$(PYTHON) -m security.scanners --setup

demo: setup-demo
	$(PYTHON) -m localrun up --customer $(CUSTOMER)

demo-down:
	$(PYTHON) -m localrun down

synth: setup-demo
ifeq ($(CUSTOMER),all)
	@$(MAKE) --no-print-directory synth-all
else
	cdk synth CustomerStack -c customer=$(CUSTOMER) --no-notices --quiet
	@echo "Synthesized customer '$(CUSTOMER)' offline, compliance gate passed:"
	@echo "  template:          cdk.out/CustomerStack.template.json"
	@echo "  compliance report: $$($(PYTHON) -m stacks.compliance cdk.out)"
endif

synth-all: setup-demo
	cdk synth -c customer=all --no-notices --quiet
	@echo "Synthesized the audit stack and every registered customer, compliance gate passed:"
	@echo "  templates:         cdk.out/ (one assembly-<slug>/ per customer)"
	@echo "  compliance report: $$($(PYTHON) -m stacks.compliance cdk.out)"

# The pipeline's synth step (stacks/pipeline_stack.py): its app, every template it deploys
# validated by the CDK's CloudFormation validation (app.py), then a diff against every
# deployed stack for the approval. Needs accounts.toml with [pipeline], and AWS credentials
# for the diff.
pipeline-synth: setup-demo
	cdk synth -c pipeline=1 -c template_validation=all --no-notices --quiet

pipeline-diff: setup-demo
	cdk diff -c pipeline=1 --no-notices '**'

test: setup lint
	@echo "==> Tests (two workers)"
	$(PYTHON) -m pytest -n 2 --dist loadgroup

lint: setup
	@echo "==> ruff and mypy over the whole tree"
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

matrix: setup
	$(PYTHON) -m security.access_matrix

scan: setup
	$(PYTHON) -m security.scanners

# Re-record what the partner tools send (installs the pinned tools of
# security/tools-requirements.txt into .venv-partner-tools, runs them against a local recording
# server) into security/partner_tool_requests.json, which the tests evaluate; then refresh the
# generated blocks of docs/partner-tools.md. Needed after a pin bump (a test says so).
partner-tools: setup
	$(PYTHON) -m security.partner_tools --record --write-doc

# Re-pin every transitive version after changing a requirements file.
lock: $(UV)
	$(UV) pip compile --quiet --python $(PYTHON) --universal --no-header requirements-dev.txt \
		| awk '/^-e /{skip=1; next} skip && /^ +#/{next} {skip=0; print}' > requirements.lock

clean:
	rm -rf cdk.out .pytest_cache .mypy_cache .ruff_cache
