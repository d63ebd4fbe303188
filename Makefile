# The two commands of the README: `make demo` and `make test`. Each installs what it
# needs first (a virtualenv in .venv, the CDK CLI in node_modules), so both work on a
# fresh clone with Python ≥ 3.11 and Node.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: install lambda-bundle demo up test lint synth bench chaos mapping-schema clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The Lambda bundle (sources + arm64 wheels from PyPI) is built here, with the other
# downloads, so that `cdk synth` afterwards needs no network.
lambda-bundle: $(VENV)/.installed
	$(PY) -c "from infra.bundling import build_lambda_code; build_lambda_code()"

install: $(VENV)/.installed node_modules/.installed lambda-bundle

demo: $(VENV)/.installed
	$(VENV)/bin/crmsync demo

up: $(VENV)/.installed
	$(VENV)/bin/crmsync up

test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -n 3 --dist loadfile  # a module's stack starts once; e2e waits leave 2 cores room for 3

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

synth: install
	npx cdk synth --quiet

# The README's performance table, every row measured in this run (each bench module also
# runs alone: `.venv/bin/python -m bench.bench_calls`, `bench.bench_end_to_end`, ...).
bench: $(VENV)/.installed
	$(PY) -m bench.bench_table

chaos: $(VENV)/.installed  # 10,000 changes under every fault, five seeds (long: minutes a seed)
	$(PY) -m bench.chaos --seeds 1,2,3,4,5

mapping-schema: $(VENV)/.installed  # after a change to the mapping models (a test says when)
	$(PY) -c "import json; from shared.mapping.schema import JSON_SCHEMA_FILE, mapping_json_schema; open(JSON_SCHEMA_FILE, 'w').write(json.dumps(mapping_json_schema(), indent=2) + '\\n')"

clean:
	rm -rf $(VENV) node_modules cdk.out build .pytest_cache .mypy_cache .ruff_cache
