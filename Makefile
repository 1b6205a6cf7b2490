# Two commands that work on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 8080
HOST   ?= 127.0.0.1
STAMP  := $(VENV)/.installed
# A real peer for the stdio tests: the reference "everything" server from npm (runs on node 20).
EVERYTHING := .tools/node_modules/@modelcontextprotocol/server-everything/dist/index.js
EVERYTHING_VERSION := 2026.8.31

.PHONY: run test lint bench conformance clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	PORT=$(PORT) HOST=$(HOST) $(BIN)/mcp-tornado serve --dev --servers-dir servers.d

lint: $(STAMP)
	$(BIN)/ruff check --isolated --line-length 120 --select E,F,W,I,B,UP mcp_tornado tests bench
	$(BIN)/ruff format --isolated --check --line-length 120 mcp_tornado tests bench
	$(BIN)/mypy
	$(BIN)/python tools/check_layers.py

$(EVERYTHING):
	npm install --silent --no-audit --no-fund --prefix .tools @modelcontextprotocol/server-everything@$(EVERYTHING_VERSION)

test: $(STAMP) $(EVERYTHING) lint
	$(BIN)/python -m pytest

# The official MCP conformance suite against the in-process, command: and url: legs (and the SDK
# itself as the reference), at 2025-11-25 and 2026-07-28; installs node 22 and the pinned suite
# into .tools/ from npm on first use (examples/conformance/run.py).
conformance: $(STAMP)
	$(BIN)/python examples/conformance/run.py

bench: $(STAMP)
	@if command -v wrk >/dev/null; then $(BIN)/python bench/bench_wrk.py; \
	else echo "wrk not found (apt-get install wrk): measuring with the Python client"; $(BIN)/python bench/bench_tools_call.py; fi
	$(BIN)/python bench/bench_reload.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
