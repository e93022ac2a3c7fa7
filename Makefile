# autoloop developer commands. `make help` lists them.
#
# Python runs from the virtual environment .venv in this checkout, created from pyproject.toml by
# `make venv` (every target that runs Python depends on it; pip runs again only when
# pyproject.toml changes). PYTHON=/path/to/python uses that interpreter instead and leaves .venv
# alone (install the packages into it with `make install PYTHON=...`).
PYTHON ?= .venv/bin/python
# The interpreter that creates .venv (Python >= 3.11).
BASE_PYTHON ?= python3
PYTEST_ARGS ?=

VENV := .venv
VENV_PYTHON := $(VENV)/bin/python
# sha256 of the pyproject.toml .venv was installed from.
VENV_STAMP := $(VENV)/.autoloop-pyproject.sha256
# $(PYTHON) for the dev scripts (absolute: they cd), and the directory of its console scripts.
PYTHON_PATH := $(if $(findstring /,$(PYTHON)),$(abspath $(PYTHON)),$(PYTHON))
PYBIN := $(if $(findstring /,$(PYTHON)),$(dir $(PYTHON)),)

# One thing at a time: apt-get and pip must not run twice at once.
.NOTPARALLEL:
.PHONY: help venv system-deps install lint crds test test-unit test-cluster bench bench-full demo \
	cluster-build cluster-up cluster-down

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

venv: ## .venv: the package and its dev tools from pyproject.toml (pip again only when it changes)
ifeq ($(abspath $(PYTHON)),$(abspath $(VENV_PYTHON)))
	@set -e; \
	want="$$(sha256sum pyproject.toml | cut -d' ' -f1)"; \
	if [ -x $(VENV_PYTHON) ] && $(VENV_PYTHON) -c '' 2>/dev/null; then \
	  if [ "$$(cat $(VENV_STAMP) 2>/dev/null)" = "$$want" ]; then exit 0; fi; \
	else \
	  command -v $(BASE_PYTHON) >/dev/null || { echo "ERROR: $(BASE_PYTHON) not found; install Python >= 3.11 (or make BASE_PYTHON=python3.X)" >&2; exit 1; }; \
	  $(BASE_PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "ERROR: autoloop needs Python >= 3.11; $(BASE_PYTHON) is $$($(BASE_PYTHON) -V 2>&1) (set BASE_PYTHON=python3.X)" >&2; exit 1; }; \
	  echo "== $(VENV): creating it with $(BASE_PYTHON) -m venv"; \
	  rm -rf $(VENV); \
	  if ! $(BASE_PYTHON) -m venv $(VENV); then \
	    rm -rf $(VENV); \
	    if command -v virtualenv >/dev/null; then \
	      echo "== $(BASE_PYTHON) -m venv failed (Debian: python3-venv missing); using virtualenv instead"; \
	      virtualenv -q -p "$$(command -v $(BASE_PYTHON))" $(VENV); \
	    else \
	      echo "== $(BASE_PYTHON) -m venv failed (Debian: python3-venv missing); installing it with dev/system-deps.sh --venv"; \
	      BASE_PYTHON=$(BASE_PYTHON) bash dev/system-deps.sh --venv; \
	      $(BASE_PYTHON) -m venv $(VENV) || { rm -rf $(VENV); echo "ERROR: $(BASE_PYTHON) -m venv still fails: install python3-venv (or pip install virtualenv) and run make again" >&2; exit 1; }; \
	    fi; \
	  fi; \
	fi; \
	echo "== $(VENV): pip install -e \".[dev]\" (pyproject.toml new or changed; the first install fills ~800 MB and takes a few minutes)"; \
	$(VENV_PYTHON) -m pip install --disable-pip-version-check -e ".[dev]"; \
	echo "$$want" >$(VENV_STAMP); \
	echo "== $(VENV): ready ($(VENV_PYTHON))"
else
	@echo "== PYTHON=$(PYTHON): using it as it is (not $(VENV)); make install PYTHON=$(PYTHON) installs the packages into it"
endif

system-deps: ## Debian packages the dev tier needs (prometheus, openssl, curl, make), only when missing
	@bash dev/system-deps.sh

install: venv ## (re)install the package with its dev tools into PYTHON (.venv)
	$(PYTHON) -m pip install -e ".[dev]"

lint: venv ## ruff, mypy, import layering, CRD drift
	$(PYTHON) -m ruff check autoloop tests bench dev
	$(PYTHON) -m ruff format --check autoloop tests bench
	$(PYTHON) -m mypy
	$(PYBIN)lint-imports
	$(PYTHON) -m autoloop.cli crds --check

crds: venv ## regenerate crds/*.yaml from autoloop/api
	$(PYTHON) -m autoloop.cli crds

test: system-deps venv cluster-up ## every test but the slow scenarios (under 30 min): cluster, then unit (builds and starts the local control plane and Prometheus first)
	$(PYTHON) -m pytest tests -q -m "not slow" $(PYTEST_ARGS)

test-slow: system-deps venv cluster-up ## the slow cluster scenarios (crash points of an allocation, failure learning, routing): ~10 min
	$(PYTHON) -m pytest tests -q -m slow $(PYTEST_ARGS)

test-unit: venv ## unit tests only (no cluster)
	$(PYTHON) -m pytest tests/unit -q $(PYTEST_ARGS)

test-cluster: system-deps venv cluster-up ## cluster tests only
	$(PYTHON) -m pytest tests/cluster -q $(PYTEST_ARGS)

bench: venv ## every benchmark in quick mode (under a minute each; data: AUTOLOOP_DATA, else ../shared/data)
	@for b in bench/[a-z]*.py; do n=$$(basename $$b .py); echo "== bench.$$n --quick"; $(PYTHON) -m bench.$$n --quick || exit 1; done

bench-full: venv ## every benchmark at full size (long)
	@for b in bench/[a-z]*.py; do n=$$(basename $$b .py); echo "== bench.$$n"; $(PYTHON) -m bench.$$n || exit 1; done

demo: system-deps venv cluster-up ## local cluster + Prometheus + synthetic workload + operator + examples
	PYTHON=$(PYTHON_PATH) bash dev/demo.sh

cluster-build: ## build the control-plane binaries into ~/.cache/autoloop (once: ~15 min cold)
	bash dev/cluster.sh build

cluster-up: system-deps venv ## start (building once) the local control plane and Prometheus
	bash dev/cluster.sh build
	bash dev/cluster.sh up
	PYTHON=$(PYTHON_PATH) bash dev/prometheus.sh up

cluster-down: ## stop them
	-bash dev/prometheus.sh down
	-bash dev/cluster.sh down
