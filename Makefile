# Two commands that work on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 8080
HOST   ?= 127.0.0.1
# Two installs: what running needs (`make run`), and that plus the test extras (`make test`).
RUN_STAMP := $(VENV)/.installed-run
STAMP  := $(VENV)/.installed
# A real peer for the stdio tests: the reference "everything" server from npm (runs on node 20).
EVERYTHING := .tools/node_modules/@modelcontextprotocol/server-everything/dist/index.js
EVERYTHING_VERSION := 2026.8.31
# Real parts for tests/cluster/: Debian's redis-server and nginx, run unprivileged by the tests;
# and chromium, the headless browser of tests/browser/ (the console).
# Installed once (apt-get, through sudo unless root) when one is missing, without starting them as
# services (RUNLEVEL=1): the tests start their own; the stamp names them all.
DEBIAN_PACKAGES := .tools/.debian-packages-redis-nginx-chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: run test lint bench bench-smoke conformance clean mutants

$(RUN_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUN_STAMP)

$(STAMP): pyproject.toml $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# langchain-mcp-adapters (tests/e2e/test_langchain.py) needs mcp 1.x, the gateway mcp 2.x: it
# gets a virtualenv of its own, and the test runs it as a separate client process.
LANGCHAIN_VENV := .tools/langchain
LANGCHAIN_VERSION := 0.3.2
LANGCHAIN := $(LANGCHAIN_VENV)/.installed-$(LANGCHAIN_VERSION)

$(LANGCHAIN):
	test -x $(LANGCHAIN_VENV)/bin/python || $(PYTHON) -m venv $(LANGCHAIN_VENV)
	$(LANGCHAIN_VENV)/bin/python -m pip install --quiet langchain-mcp-adapters==$(LANGCHAIN_VERSION) \
		mcp==1.30.0 langchain-core==1.8.3 pydantic==2.14.4 httpx==0.28.1
	touch $(LANGCHAIN)

run: $(RUN_STAMP)
	PORT=$(PORT) HOST=$(HOST) $(BIN)/mcp-tornado serve --dev --servers-dir servers.d

lint: $(STAMP)
	$(BIN)/ruff check --isolated --line-length 120 --select E,F,W,I,B,UP mcp_tornado tests bench
	$(BIN)/ruff format --isolated --check --line-length 120 mcp_tornado tests bench
	$(BIN)/mypy
	$(BIN)/python tools/check_layers.py

$(EVERYTHING):
	npm install --silent --no-audit --no-fund --prefix .tools @modelcontextprotocol/server-everything@$(EVERYTHING_VERSION)

$(DEBIAN_PACKAGES):
	@if ! command -v redis-server >/dev/null || ! { command -v nginx || test -x /usr/sbin/nginx; } >/dev/null \
		|| ! command -v chromium >/dev/null; then \
		command -v apt-get >/dev/null || { echo "install redis-server, nginx and chromium (the tests run them)"; exit 1; }; \
		echo "installing redis-server and nginx for tests/cluster/, chromium for tests/browser/"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq redis-server nginx chromium >/dev/null; \
	fi
	@mkdir -p $(@D) && touch $@

test: $(STAMP) $(EVERYTHING) $(DEBIAN_PACKAGES) $(LANGCHAIN) lint
	$(BIN)/python -m pytest

# The official MCP conformance suite against the in-process, command: and url: legs (and the SDK
# itself as the reference), at 2025-11-25 and 2026-07-28; installs node 22 and the pinned suite
# into .tools/ from npm on first use (examples/conformance/run.py).
conformance: $(STAMP)
	$(BIN)/python examples/conformance/run.py

BENCH_NODE := .tools/bench-node/node_modules/@modelcontextprotocol/sdk/package.json

$(BENCH_NODE):
	npm install --silent --no-audit --no-fund --prefix .tools/bench-node \
		@modelcontextprotocol/sdk@1.32.2 express@5.3.0 zod@4.6.7

# Every peer side by side, one table of ratios (bench/README.md); wrk from Debian's packages.
bench: $(STAMP) $(if $(shell command -v npm),$(BENCH_NODE))
	@command -v wrk >/dev/null || { command -v apt-get >/dev/null || { echo "make bench needs wrk"; exit 2; }; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	$(BIN)/python bench/bench.py
	$(BIN)/python bench/bench_reload.py

# A few seconds of every benchmark scenario with every answer checked: proves the benchmark still runs.
bench-smoke: $(STAMP)
	$(BIN)/python bench/bench.py --smoke

# Mutation testing (tests/MUTANTS.md): mutmut over transport/, auth.py, hosting/ and handlers/mcp.py
# with the quick tests ([mutmut] in setup.cfg), then the score per module. A full run takes hours on
# two cores; MUTANTS='*__mutmut_*7' runs a fixed tenth, MUTANTS='mcp_tornado.auth.*' one module.
# Results stay in mutants/, so a second run picks up where the first stopped.
MUTANTS ?=
MUTANTS_CHILDREN ?= 2
MUTMUT := $(BIN)/mutmut

$(MUTMUT): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,mutation]'

mutants: $(MUTMUT)
	$(MUTMUT) run --max-children $(MUTANTS_CHILDREN) $(foreach m,$(MUTANTS),'$(m)')
	$(BIN)/python tools/mutation_score.py --survivors

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
