# Kubernetes deploy targets; the top-level Makefile does `include infra/deploy.mk`.
#   make manifests        render infra/ to build/manifests.yaml (kubectl kustomize, else scripts/render_manifests.py)
#   make deploy-openfaas  base (incl. the dispatcher), then faas-cli up -f stack.yml
#   make deploy-kubeless  base, package the functions, apply Functions and triggers
# Secrets first: see infra/secrets/secrets.example.yaml and docs/kubernetes.md.

KUBECTL    ?= kubectl
PYTHON     ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)
FAAS_CLI   ?= $(or $(wildcard .cache/bin/faas-cli),$(shell command -v faas-cli 2>/dev/null),faas-cli)
OPENFAAS_URL ?= http://127.0.0.1:8080
REGISTRY   ?= ghcr.io/kubepredict
TAG        ?= 0.1.0
export OPENFAAS_URL REGISTRY TAG

.PHONY: manifests deploy-openfaas deploy-kubeless package-kubeless faas-cli job-image

manifests:
	@mkdir -p build
	@if command -v $(KUBECTL) >/dev/null 2>&1; then \
	  $(KUBECTL) kustomize infra > build/manifests.yaml && \
	  $(KUBECTL) kustomize infra/openfaas > build/manifests-openfaas.yaml; \
	else \
	  $(PYTHON) scripts/render_manifests.py infra -o build/manifests.yaml && \
	  $(PYTHON) scripts/render_manifests.py infra/openfaas -o build/manifests-openfaas.yaml; \
	fi
	@echo "wrote build/manifests.yaml and build/manifests-openfaas.yaml"

faas-cli:
	scripts/install-faas-cli.sh

job-image:
	docker build -f infra/docker/job.Dockerfile -t $(REGISTRY)/job:$(TAG) .

deploy-openfaas:
	$(KUBECTL) apply -k infra/openfaas
	$(FAAS_CLI) up -f stack.yml --gateway $(OPENFAAS_URL)

package-kubeless:
	scripts/package-kubeless.sh

deploy-kubeless: package-kubeless
	$(KUBECTL) apply -k infra/
	$(KUBECTL) apply -f build/kubeless/upload.yaml -f build/kubeless/train.yaml \
	  -f build/kubeless/predict.yaml -f build/kubeless/result.yaml
	$(KUBECTL) apply -f triggers/http-triggers.yaml -f triggers/kafka-triggers.yaml
	@echo "optional nightly retraining: edit and apply triggers/cronjob-trigger.yaml"
