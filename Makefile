# autoloop developer commands. `make help` lists them.
PYTHON ?= python3
PYTEST_ARGS ?=

.PHONY: help install lint crds test test-unit test-cluster bench bench-full demo cluster-up cluster-down

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

install: ## install the package with its dev tools
	$(PYTHON) -m pip install -e ".[dev]"

lint: ## ruff, mypy, import layering, CRD drift
	ruff check autoloop tests bench dev
	ruff format --check autoloop tests bench
	mypy
	lint-imports
	$(PYTHON) -m autoloop.cli crds --check

crds: ## regenerate crds/*.yaml from autoloop/api
	$(PYTHON) -m autoloop.cli crds

test: ## every test: unit, then cluster (starts the local control plane and Prometheus)
	$(PYTHON) -m pytest tests -q $(PYTEST_ARGS)

test-unit: ## unit tests only (no cluster)
	$(PYTHON) -m pytest tests/unit -q $(PYTEST_ARGS)

test-cluster: ## cluster tests only
	$(PYTHON) -m pytest tests/cluster -q $(PYTEST_ARGS)

bench: ## every benchmark in quick mode (under a minute each)
	@for b in bench/[a-z]*.py; do n=$$(basename $$b .py); echo "== bench.$$n --quick"; $(PYTHON) -m bench.$$n --quick || exit 1; done

bench-full: ## every benchmark at full size (long)
	@for b in bench/[a-z]*.py; do n=$$(basename $$b .py); echo "== bench.$$n"; $(PYTHON) -m bench.$$n || exit 1; done

demo: ## local cluster + Prometheus + synthetic workload + operator + examples
	bash dev/demo.sh

cluster-up: ## start (building once) the local control plane and Prometheus
	bash dev/cluster.sh up
	bash dev/prometheus.sh up

cluster-down: ## stop them
	-bash dev/prometheus.sh down
	-bash dev/cluster.sh down
