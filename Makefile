# lxcri.cloud: every command builds what it needs, starting from a fresh machine.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
VENV := .venv
BIN := $(VENV)/bin
PYTHON := $(shell scripts/find-python)
COLLECTIONS := build/collections
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/$(COLLECTIONS)
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: venv collection sandbox test sanity lint units integration molecule demo bench-inventory clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-test.txt
	touch $@

# The collection as users get it: the built tarball, installed.
collection: venv
	rm -rf build/dist $(COLLECTIONS)
	$(BIN)/ansible-galaxy collection build --force --output-path build/dist . >/dev/null
	$(BIN)/ansible-galaxy collection install --force -p $(COLLECTIONS) build/dist/lxcri-cloud-*.tar.gz >/dev/null

sandbox: venv
	scripts/sandbox up

test: sanity lint units integration molecule

sanity: venv
	scripts/sanity

lint: collection
	$(BIN)/ansible-lint --profile production

units: venv
	$(BIN)/python -m pytest -q tests/unit tests/sandbox/tests

integration: collection sandbox
	scripts/integration

molecule: collection sandbox
	scripts/molecule

demo: collection sandbox
	scripts/demo

bench-inventory: venv
	scripts/bench-inventory

clean:
	-scripts/sandbox down
	rm -rf build
