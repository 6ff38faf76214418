# The two entry points of the README. Each installs what it needs into .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Gaudi's TensorFlow (2.15, Keras 2): the training code is tested against it too.
TF215_STAMP := .venv-tf215/.installed

.PHONY: demo test clean

$(STAMP): pyproject.toml requirements.lock
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[tf,dev]'
	touch $@

$(TF215_STAMP): requirements-tf215.txt
	$(PY) -m venv .venv-tf215
	.venv-tf215/bin/python -m pip install -q --upgrade pip
	.venv-tf215/bin/python -m pip install -q -r requirements-tf215.txt
	touch $@

## demo: the main job on the local embedded default (synthetic data, CPU, loopback server)
demo: $(STAMP)
	$(BIN)/invoke pipeline

## test: lint + the whole test suite (CI runs exactly this)
test: $(STAMP) $(TF215_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .venv-tf215 artifacts build .pytest_cache .ruff_cache
