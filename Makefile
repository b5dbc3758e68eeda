# memtasks — `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.DEFAULT_GOAL := help
.PHONY: help install services run fleet bench bench-quick chaos soak test test-fast lint format typecheck check clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: $(VENV)/.installed ## Create .venv and install memtasks with its dev tools

$(VENV)/.installed: pyproject.toml deploy/constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "memtasks needs Python 3.11+"; exit 1; }
	@$(PYTHON) -m venv --help >/dev/null 2>&1 && $(PYTHON) -c 'import ensurepip' 2>/dev/null || \
		{ echo "installing python3-venv"; apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c deploy/constraints.txt -e '.[dev]'
	@touch $@

services: ## Start PostgreSQL and Redis when they are not reachable (installs Debian packages)
	@bash scripts/services.sh

run: install ## The main job: a local fleet (SQLite + Redis) driven by a synthetic agent, then a report
	@bash scripts/services.sh --install-redis
	$(BIN)/memtasks demo

fleet: install ## The same fleet, left running with Flower on :5555 and the web console on :9810 until Ctrl-C
	@bash scripts/services.sh --install-redis
	$(BIN)/memtasks demo --keep

bench: install services ## Benchmarks next to bare Celery, Procrastinate and pgqueuer (bench/results/)
	$(BIN)/pip install -q -e '.[dev,bench]'
	bash bench/peers/setup.sh >/dev/null
	$(BIN)/python -m bench.run

bench-quick: install services ## The same, smaller: a few minutes
	$(BIN)/pip install -q -e '.[dev,bench]'
	bash bench/peers/setup.sh >/dev/null
	$(BIN)/python -m bench.run --quick

chaos: install services ## Chaos suite: 10,000 jobs on a private fleet while workers, Redis and PostgreSQL fail
	$(BIN)/python -m bench.chaos --jobs 10000 --pg private --out bench/results/chaos.json
	$(BIN)/python -m bench.chaos.network --out bench/results/chaos.json
	$(BIN)/python -m bench.chaos.link_faults --out bench/results/chaos.json

soak: install services ## Soak: steady mixed load with faults for 30 min (ARGS="--minutes 5" for less); fails on growth
	$(BIN)/python -m bench.soak $(ARGS)

test: install services ## Run the whole test suite against real SQLite, PostgreSQL and Redis
	$(BIN)/pytest -m "not serial" -n 2 --dist loadfile --durations=10
	$(BIN)/pytest -m serial --durations=20

test-fast: install ## Run the pure unit tests only (no services)
	$(BIN)/pytest -m unit

lint: install ## ruff: lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install ## ruff: fix what can be fixed and format
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: install ## mypy (strict for domain, storage and services)
	$(BIN)/mypy memtasks

check: lint typecheck test ## lint, typecheck and test: what CI runs

clean: ## Remove the virtual environment and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
