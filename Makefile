# The two commands a new user runs: `make demo` and `make test`. Both set up .venv first; `make test` also installs
# the server and browser its tests drive where the machine allows it (system-deps).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
REQS   := requirements-telemetry.txt requirements-serve.txt requirements-train.txt requirements-dev.txt

.PHONY: install system-deps demo test e2e stack bench soak fuzz audit evaluate openapi screenshot images deploy-check clean

install: $(STAMP)

$(STAMP): $(REQS) pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

## system-deps: Debian's prometheus (with promtool) and chromium, which the Prometheus and browser tests drive:
## installs the missing ones with apt-get as root or through sudo without a password, or fails saying how to.
## `make test`, `make e2e` and `make deploy-check` take this step where they can (SYSTEM_DEPS_FLAGS=--if-possible):
## where they cannot, the tests that need what is missing skip, and the run names them in one line before they start.
system-deps:
	@scripts/system-deps.sh $(SYSTEM_DEPS_FLAGS)

test e2e deploy-check: SYSTEM_DEPS_FLAGS ?= --if-possible

## demo: the whole product on the embedded database with simulated data.
demo: $(STAMP)
	$(VENV)/bin/pycemaker demo

## test: the whole test suite against a real embedded MongoDB-compatible server, on TEST_WORKERS pytest-xdist
## workers (default 3; each starts its own server; TEST_WORKERS=0 runs in one process). Three on two cores: much of
## the suite waits on servers, subprocesses and clocks (measured on 2 cores, one commit: 488 s with 2 workers using
## 1.5 cores on average, 422 s with 3 using 1.8).
TEST_WORKERS ?= 3
test: system-deps $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=15 $(PYTEST_ARGS)

## e2e: the end-to-end test with a real Prometheus (Debian's prometheus package).
e2e: system-deps $(STAMP)
	$(PY) -m pytest -m e2e $(PYTEST_ARGS)

## stack: the whole stack in Docker (not run in CI).
stack:
	docker compose up --build

## bench: performance figures, written to bench/results/*.json.
bench: $(STAMP)
	$(PY) bench/run_all.py

## soak: 10 min of the serving benchmark's load on gunicorn (bench/results/soak.json, docs/operations.md):
## errors, workers, memory slope per worker. Uses wrk when installed (apt-get install wrk).
soak: $(STAMP)
	$(PY) bench/soak_bench.py --duration 600

## fuzz: schemathesis over every route, 30 examples per operation and mode (over 1,000 calls), stateful
## runs along the OpenAPI links (bench/results/fuzz.json, docs/operations.md). CI runs a few hundred.
fuzz: $(STAMP)
	PYCEMAKER_FUZZ_EXAMPLES=30 PYCEMAKER_FUZZ_REPORT=bench/results/fuzz.json $(PY) -m pytest tests/security/test_openapi_fuzz.py $(PYTEST_ARGS)
	$(PY) bench/fuzz_report.py

## audit: known vulnerabilities in the pinned requirements (needs PyPI).
audit: $(STAMP)
	$(PY) -m pip_audit -r requirements-serve.txt -r requirements-train.txt

## evaluate: backtests against baselines, time-to-failure scoring and the NAB runs; rewrites docs/evaluation.md
## (about 13 min on 2 cores; trains a model first if the registry has none), then apps the base model never saw
## (docs/evaluation-family.md, about 22 min).
evaluate: $(STAMP)
	$(PY) scripts/evaluate.py $(EVALUATE_ARGS)
	$(VENV)/bin/pycemaker evaluate-family

## images: build the serving and training images (needs a Docker engine; not run in CI).
images:
	docker build -f Dockerfile.serve -t pycemaker-serve .
	docker build -f Dockerfile.train -t pycemaker-train .

## deploy-check: hadolint, promtool check/test of the alert rules, dashboard and image checks.
deploy-check: system-deps $(STAMP)
	$(PY) -m pytest tests/deploy $(PYTEST_ARGS)

## screenshot: docs/img/dashboard.png (the README's image) from `make demo`'s first trained model (~5 min).
screenshot: $(STAMP) system-deps
	$(PY) scripts/screenshot.py

## openapi: rewrite docs/openapi.json from the code (a test fails when it is stale).
openapi: $(STAMP)
	$(VENV)/bin/pycemaker openapi docs/openapi.json

clean:
	rm -rf $(VENV) var .pytest_cache
