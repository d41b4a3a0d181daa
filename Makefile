# Kubepredict — `make run` serves the platform locally, `make test` runs every test.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 8080
DATA   ?= ./data
PYTEST_ARGS ?=
FUZZ_EXAMPLES ?= 200

.PHONY: setup setup-services images run test test-unit demo bench bench-peers fuzz soak clean

$(BIN)/.installed: requirements.txt shared/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q -e shared
	@touch $@

setup: $(BIN)/.installed ## Python virtualenv with pinned dependencies and the kubepredict package

setup-services: ## Real services for integration tests (PostgreSQL, S3Proxy, Kafka, Prometheus, Chromium, kube-apiserver, images)
	bash scripts/setup-services.sh
	bash scripts/kube-apiserver.sh build
	bash scripts/kube-node.sh build
	bash scripts/build-promtool.sh
	bash scripts/images.sh build

images: ## Container images (job + four functions) with podman on a local Debian base; cache in ~/.cache/kubepredict/images
	bash scripts/images.sh build

run: setup ## Serve the platform locally: http://127.0.0.1:$(PORT)/ui/
	$(BIN)/kubepredict serve --port $(PORT) --data-dir $(DATA)

test: setup setup-services ## Every test (unit, integration on real services, end-to-end)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: setup
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

demo: setup ## Upload, train, predict and print results against a running `make run`
	$(BIN)/kubepredict demo --gateway http://127.0.0.1:$(PORT)

bench: setup ## Benchmarks; prints a table
	BIG=$(BIG) $(BIN)/python -m bench

bench-peers: setup ## Kubepredict vs MLServer side by side with wrk (MLServer in its own venv under ~/.cache/kubepredict)
	$(BIN)/python -m bench.peers

soak: setup ## Mixed traffic with worker kills and a gateway restart (SOAK_SECONDS, default 600) on both backends, then a consistency check; not CI
	$(BIN)/python -m bench.soak

-include infra/deploy.mk
-include infra/monitor.mk

clean:
	rm -rf $(VENV) .cache build .pytest_cache test-artifacts

fuzz: setup ## Schema-driven fuzzing of every route (schemathesis, FUZZ_EXAMPLES per route) against a fresh gateway
	KUBEPREDICT_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest tests/e2e/test_schema_fuzz.py -p no:cacheprovider $(PYTEST_ARGS)
