# odoo-operator: the two commands that matter are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Reinstall the virtualenv whenever the dependency declarations change.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-12)
PYTEST_FLAGS ?=

.PHONY: bootstrap venv lint test test-unit test-integration test-e2e test-conformance demo \
	bench-backup clean \
	chart-sync image

$(STAMP): pyproject.toml constraints.txt
	rm -f $(VENV)/.installed-*
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

venv: $(STAMP)

## bootstrap: Python deps, system packages, Azurite and the control-plane binaries
bootstrap: $(STAMP)
	$(BIN)/odoo-devstack bootstrap

## lint: formatting, lint rules and strict typing
lint: $(STAMP)
	$(BIN)/ruff format --check operator tests e2e conftest.py
	$(BIN)/ruff check operator tests e2e conftest.py
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

## test-unit: the fast, service-free part
test-unit: $(STAMP)
	$(BIN)/pytest -m unit $(PYTEST_FLAGS)

## test-integration: real control plane, PostgreSQL, Redis and Azurite
test-integration: bootstrap
	$(BIN)/pytest -m integration $(PYTEST_FLAGS)

## test-e2e: the operator through KUBECONFIG (local control plane unless told otherwise)
test-e2e: bootstrap
	$(BIN)/pytest -m e2e $(PYTEST_FLAGS)

## test-conformance: the operator's contract with real Odoo 17.0 and 18.0 on the real node
test-conformance: bootstrap
	$(BIN)/pytest -m conformance $(PYTEST_FLAGS)

## test: everything CI runs
test: bootstrap lint
	$(BIN)/pytest $(PYTEST_FLAGS)

## demo: the operator on the embedded local stack (Ctrl-C stops it)
demo: bootstrap
	$(BIN)/odoo-devstack demo

## bench-backup: backup/verify/restore of a generated 1 GB tenant (figures in docs/benchmarks.md)
bench-backup: bootstrap
	$(BIN)/python -m odoo_devstack.bench_backup

.PHONY: bench-drill
BENCH_DRILL_MB ?= 1024
## bench-drill: a restore drill of a real Odoo 18.0 tenant whose database is padded to BENCH_DRILL_MB (default 1 GB): its RTO by phase (docs/benchmarks.md)
bench-drill: bootstrap
	ODOO_OPERATOR_BENCH_DRILL_PAD_MB=$(BENCH_DRILL_MB) $(BIN)/pytest -p no:cacheprovider conformance/test_backup_restore.py -k restore_drill

.PHONY: bench-pitr
BENCH_PITR_ARGS ?=
## bench-pitr: point-in-time recovery of a generated 1 GB tenant from its WAL archive, and the archive's RPO (docs/benchmarks.md)
bench-pitr: bootstrap
	$(BIN)/python -m odoo_devstack.bench_pitr $(BENCH_PITR_ARGS)

.PHONY: bench-fleet
BENCH_FLEET_ARGS ?=
## bench-fleet: the operator with 100, 500 and 1,000 tenants on KWOK: time to Ready, idle calls, restart (docs/benchmarks.md)
bench-fleet: bootstrap
	$(BIN)/python -m odoo_devstack.bench_fleet $(BENCH_FLEET_ARGS)

.PHONY: bench-evidence
## bench-evidence: the auditor's report over 1,000 tenants and a year of operations journal (docs/benchmarks.md)
bench-evidence: $(STAMP)
	$(BIN)/python -m odoo_devstack.bench_evidence

.PHONY: bench-kube-client
## bench-kube-client: CPU and wall time per 1,000 apiserver reads, session trusting the environment or not
bench-kube-client: bootstrap
	$(BIN)/python -m odoo_devstack.bench_kube_client

.PHONY: bench-metrics
## bench-metrics: render time and memory of the metrics with 1,000 synthetic tenants (docs/benchmarks.md)
bench-metrics: $(STAMP)
	$(BIN)/python -m odoo_devstack.bench_metrics

## chart-sync: copy crds/ and the monitoring rules and dashboard into the chart, re-render the kustomize base
chart-sync: $(STAMP)
	cp crds/*.yaml charts/odoo-operator/files/crds/
	mkdir -p charts/odoo-operator/files/monitoring
	cp monitoring/prometheus-rules.yaml monitoring/grafana-dashboard.json charts/odoo-operator/files/monitoring/
	$(eval HELM := $(shell $(BIN)/python -c 'from odoo_devstack import binaries as b; print(b.ensure(b.HELM))'))
	$(HELM) template odoo-operator charts/odoo-operator --namespace odoo-operator \
		--kube-version $(shell $(BIN)/python -c 'from odoo_devstack import binaries as b; print(b.KUBERNETES_VERSION)') \
		--values manifests/base/chart-values.yaml > manifests/base/odoo-operator.yaml

IMAGE ?= ghcr.io/tenantops/odoo-operator
IMAGE_TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
## image: build the operator image (needs a Docker engine, which CI here does not have)
image:
	docker build --build-arg VERSION=$(IMAGE_TAG) \
		--build-arg REVISION=$(shell git rev-parse --short HEAD 2>/dev/null || echo unknown) \
		-t $(IMAGE):$(IMAGE_TAG) .

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
