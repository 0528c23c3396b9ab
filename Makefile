# Two commands do everything on a fresh machine: `make simulate` (the main job) and `make test`.
# Each installs what is missing first; `make install` alone is a no-op once done.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.driftloop-installed
NODE_STAMP := node_modules/.driftloop-installed
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: install simulate test lint typecheck pytest bench synth clean

install: $(PY_STAMP) $(NODE_STAMP)

$(PY_STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	$(BIN)/pip install --disable-pip-version-check -q --no-deps -e .
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

simulate: install
	$(BIN)/driftloop simulate $(ARGS)

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest $(ARGS)

# pytest exits 5 when it collected nothing (e.g. a -k filter): not a failure of the code.
test: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest $(ARGS) || [ $$? -eq 5 ]

bench: install
	$(BIN)/python -m bench $(ARGS)

synth: install
	npx cdk synth --quiet

clean:
	rm -rf cdk.out .pytest_cache .mypy_cache .ruff_cache
