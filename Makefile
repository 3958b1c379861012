# The two commands that do everything on a fresh machine: `make demo`, `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit protos clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/grpc-bridge demo

test: $(STAMP) lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check grpc_bridge tests
	$(BIN)/ruff format --check grpc_bridge tests

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

# Regenerate the committed protobuf code (demo service and test protos).
protos: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I . -I $$($(BIN)/python -c 'import google.api, os; print(os.path.dirname(os.path.dirname(google.api.__path__[0])))') \
		--python_out=. --grpc_python_out=. grpc_bridge/demo/demo.proto
	$(BIN)/python -m grpc_tools.protoc -I tests/protos \
		--python_out=tests/gen --pyi_out=tests/gen --grpc_python_out=tests/gen tests/protos/bridgetest/v1/*.proto

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .pytest_cache .ruff_cache
