# The two commands that do everything on a fresh machine: `make demo`, `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo install test lint typecheck unit protos clean tools chromium bench docs

# The test extra and the docs extra (tests/test_docs.py builds the site too).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,docs]'
	touch $(STAMP)

# .venv with grpc-bridge installed: the command is .venv/bin/grpc-bridge
# (`. .venv/bin/activate` puts it on PATH).
install: $(STAMP)
	@echo "installed: $(BIN)/grpc-bridge (run '. $(BIN)/activate' to put it on PATH)"

# Ports: make demo PORT=9080 ADMIN_PORT=9081 GRPC_PORT=50052 (the demo gRPC service,
# 50051 by default, as docs/cli.md uses it); PORT and ADMIN_PORT unset, GRPC_BRIDGE_LISTEN__PORT /
# GRPC_BRIDGE_ADMIN__PORT from the environment, else 8080 / 8081.
demo: $(STAMP)
	@echo "the command is $(BIN)/grpc-bridge ('. $(BIN)/activate' puts it on PATH)"
	$(BIN)/grpc-bridge demo --grpc-port $(or $(GRPC_PORT),50051) $(if $(PORT),--port $(PORT)) $(if $(ADMIN_PORT),--admin-port $(ADMIN_PORT))

# The documentation site: docs/*.md built by MkDocs (Material) into site/.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict
	@echo "open site/index.html"

test: $(STAMP) chromium lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check grpc_bridge tests bench
	$(BIN)/ruff format --check grpc_bridge tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# -n 4: four worker processes (pytest-xdist) on two CPUs: a quarter of the
# suite's wall time is tests waiting on timers and peers (timeouts, trickled
# bodies), which a fourth worker overlaps (3:27 with three, 2:58 with four).
unit: $(STAMP) tools
	$(BIN)/pytest -n 4

# The helm binary the packaging tests run (tests/test_packaging.py) and the real
# gRPC-Web / Connect clients the protocol tests drive (tests/helpers/js_clients.py:
# connect-es, grpc-web, buf, esbuild), pinned with their integrity hashes in
# package-lock.json and installed by npm into .venv/tools (--ignore-scripts: buf
# and esbuild find their binaries in their per-platform optional packages);
# npm itself comes from apt when missing. hadolint and kubernetes-validate come
# with the test extra.
TOOLS_STAMP := $(VENV)/tools/.installed

tools: $(TOOLS_STAMP)

$(TOOLS_STAMP): package.json package-lock.json | $(STAMP)
	@command -v npm >/dev/null || { echo "npm not found: installing it with apt-get"; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends npm; }
	mkdir -p $(VENV)/tools
	cp package.json package-lock.json $(VENV)/tools/
	cd $(VENV)/tools && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

# Headless Chromium for the browser test (tests/test_browser.py): Debian's
# package, driven by Playwright from the test extra (which never downloads a
# browser). Installed with apt-get when missing; CI runs as root.
chromium:
	@command -v chromium >/dev/null || { echo "chromium not found: installing it with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# Side-by-side benchmark against Envoy and a naive proxy (bench/README.md): a few
# minutes, 127.0.0.1 only; writes bench/results/{results.md,results.json,chart.png}.
# wrk comes from apt when missing (CI runs as root).
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): pyproject.toml | $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $@

# The echo upstream runs on Node's grpc-js (bench/node/upstream.js), pinned by package-lock.json.
BENCH_NODE := $(VENV)/bench-node/node_modules/@grpc/grpc-js/package.json

$(BENCH_NODE): bench/node/package.json bench/node/package-lock.json | $(STAMP)
	@command -v npm >/dev/null || { echo "npm not found: installing it with apt-get"; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends npm; }
	mkdir -p $(VENV)/bench-node
	cp bench/node/package.json bench/node/package-lock.json $(VENV)/bench-node/
	cd $(VENV)/bench-node && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

# The default echo upstream: C on libnghttp2 (bench/c/upstream.c), a few µs of CPU per call.
BENCH_UPSTREAM := $(VENV)/bench-upstream

$(BENCH_UPSTREAM): bench/c/upstream.c | $(STAMP)
	@test -f /usr/include/nghttp2/nghttp2.h || { echo "libnghttp2-dev not found: installing it with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libnghttp2-dev; }
	$(CC) -O2 -Wall -Wextra -o $@ bench/c/upstream.c -lnghttp2

bench: $(BENCH_STAMP) $(BENCH_NODE) $(BENCH_UPSTREAM)
	@command -v wrk >/dev/null && command -v curl >/dev/null || { echo "wrk/curl not found: installing them with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk curl; }
	$(BIN)/python bench/run.py --node-modules $(VENV)/bench-node/node_modules \
		--c-upstream $(BENCH_UPSTREAM) $(BENCH_ARGS)

# Regenerate the committed protobuf code (demo service and test protos).
protos: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I . -I $$($(BIN)/python -c 'import google.api, os; print(os.path.dirname(os.path.dirname(google.api.__path__[0])))') \
		--python_out=. --grpc_python_out=. grpc_bridge/demo/demo.proto
	$(BIN)/python -m grpc_tools.protoc -I tests/protos -I $$($(BIN)/python -c 'import google.api, os; print(os.path.dirname(os.path.dirname(google.api.__path__[0])))') \
		--python_out=tests/gen --pyi_out=tests/gen --grpc_python_out=tests/gen tests/protos/bridgetest/v1/*.proto

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .pytest_cache .ruff_cache
