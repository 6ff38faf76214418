# The two entry points of the README. Each installs what it needs into .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Gaudi's TensorFlow (2.15, Keras 2): the training code is tested against it too.
TF215_STAMP := .venv-tf215/.installed
# Exactly the bench image's requirement set (images/bench/Dockerfile: the toolkit's base
# dependencies, no extras, no TensorFlow), installed the way that image installs it.
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed
# The AWS CLI of the sync image (v1 from PyPI): tests/test_bench_job_e2e.py runs the bench Job's syncs with it.
AWSCLI_STAMP := build/awscli/.installed
# The CDK CLI, pinned in package.json (npm's latest, 3.x, cannot read aws-cdk-lib 2.275's assembly).
NODE_STAMP := node_modules/.installed

# The vCenter simulator the vSphere tests run against is built from Debian's Go packages.
SYSTEM_PACKAGES := golang-go golang-github-vmware-govmomi-dev
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test clean system-packages

$(STAMP): pyproject.toml requirements.lock
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[tf,serve,pipeline,cloud,dev]'
	touch $@

# The image's build context copied (its COPY lines) and installed from there, not editable: a copy of
# the toolkit, rebuilt when a source changes.
BENCH_CONTEXT := pyproject.toml requirements.lock README.md tasks.py contracts workloads infra
$(BENCH_STAMP): $(BENCH_CONTEXT) $(shell find contracts workloads infra -name '*.py' -o -name '*.j2' -o -name '*.yaml' 2>/dev/null)
	rm -rf $(BENCH_VENV)
	$(PY) -m venv $(BENCH_VENV)
	mkdir $(BENCH_VENV)/app
	cp -R $(BENCH_CONTEXT) $(BENCH_VENV)/app/
	cd $(BENCH_VENV)/app && ../bin/python -m pip install -q -c requirements.lock .
	touch $@

$(AWSCLI_STAMP): requirements-awscli.txt
	rm -rf build/awscli
	$(PY) -m venv build/awscli
	build/awscli/bin/python -m pip install -q -r requirements-awscli.txt
	touch $@

$(TF215_STAMP): requirements-tf215.txt
	$(PY) -m venv .venv-tf215
	.venv-tf215/bin/python -m pip install -q --upgrade pip
	.venv-tf215/bin/python -m pip install -q -r requirements-tf215.txt
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

system-packages:
	@if ! command -v go >/dev/null || ! test -d /usr/share/gocode/src/github.com/vmware/govmomi/simulator; then \
	  $(SUDO) apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(SYSTEM_PACKAGES); \
	fi

## demo: the main job on the local embedded default (synthetic data, CPU, loopback server)
demo: $(STAMP)
	$(BIN)/invoke pipeline

## test: lint, import contracts, mypy (the toolkit at 3.11, the training image's closure at 3.10) + the whole test suite (CI runs exactly this)
test: $(STAMP) $(TF215_STAMP) $(BENCH_STAMP) $(AWSCLI_STAMP) $(NODE_STAMP) system-packages
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy
# The training image's closure (python3 -m workloads.training.train) on its Gaudi base's Python.
	$(BIN)/mypy --python-version 3.10 -m workloads.training.train
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .venv-tf215 $(BENCH_VENV) node_modules artifacts build .pytest_cache .ruff_cache .mypy_cache
