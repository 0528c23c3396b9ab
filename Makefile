# Two commands do everything on a fresh machine: `make simulate` (the main job) and `make test`.
# Each installs what is missing first; `make install` alone is a no-op once done.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.driftloop-installed
NODE_STAMP := node_modules/.driftloop-installed
# checkov, the template check of the CDK suite, in its own environment: it pins many packages
# (boto3, pydantic, ...) that the dev lock holds at other versions.
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.driftloop-installed
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: install simulate test lint typecheck pytest bench synth images lock clean readme-results readme-production

install: $(PY_STAMP) $(NODE_STAMP) $(CHECKOV_STAMP)

# requirements.txt, the dev lock (requirements/dev.txt: the runtime set plus the tools, every package
# pinned with its hashes); CPython >= 3.11.4 (pyproject.toml says why).
$(PY_STAMP): requirements.txt requirements/dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q --require-hashes -r requirements.txt
	$(BIN)/pip install --disable-pip-version-check -q --no-deps -e .
	touch $@

$(CHECKOV_STAMP): requirements/checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --disable-pip-version-check -q --require-hashes -r requirements/checkov.txt
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

# The README's results of the default simulation, from a real run (tools/readme_results.py).
readme-results: install
	$(BIN)/python -m tools.readme_results

# The README's results of the production simulation, from a real run (tools/readme_production.py).
readme-production: install
	$(BIN)/python -m tools.readme_production

bench: install
	$(BIN)/python -m bench $(ARGS)

synth: install
	npx cdk synth --quiet

# Builds the four component images (docker, else podman; on an offline stand-in base made from
# Debian packages unless BASE_IMAGE is given) and runs the train and serve chain inside them as
# SageMaker would (tools/image_check.py). Needs root for podman and debootstrap.
images: install
	$(BIN)/python -m tools.image_check $(if $(BASE_IMAGE),--base-image $(BASE_IMAGE)) $(ARGS)

# Re-resolves the locks from requirements/*.in (kept pins stay unless ARGS says otherwise, e.g.
# ARGS=--upgrade or ARGS="--upgrade-package shap"). The runtime lock is for the images' platform.
UV_COMPILE := $(BIN)/uv pip compile --quiet --generate-hashes --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28
lock: install
	$(UV_COMPILE) requirements/runtime.in --override requirements/runtime-overrides.txt -o requirements/runtime.txt $(ARGS)
	$(UV_COMPILE) requirements/dev.in --override requirements/dev-overrides.txt -o requirements/dev.txt $(ARGS)
	$(UV_COMPILE) requirements/checkov.in -o requirements/checkov.txt $(ARGS)

clean:
	rm -rf cdk.out .pytest_cache .mypy_cache .ruff_cache
