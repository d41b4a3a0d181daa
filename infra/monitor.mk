# `make monitor`: a local Prometheus (Debian's `prometheus`) scraping `make run` on 127.0.0.1:$(PORT),
# with Kubepredict's alert rules; UI on http://127.0.0.1:$(PROMETHEUS_PORT)/ (Alerts tab).
# Included from the Makefile; needs `apt-get install prometheus` (or `make setup-services`).
PROMETHEUS      ?= prometheus
PROMETHEUS_PORT ?= 9090

.PHONY: monitor

monitor: ## Local Prometheus on 127.0.0.1:9090 scraping `make run` (data in ./data/prometheus)
	@command -v $(PROMETHEUS) >/dev/null || { echo "prometheus not found: apt-get install prometheus (or make setup-services)"; exit 1; }
	@mkdir -p $(DATA)/prometheus
	@sed 's/127\.0\.0\.1:8080/127.0.0.1:$(PORT)/' infra/prometheus/prometheus-local.yml > $(DATA)/prometheus/prometheus.yml
	@# With a token set, /metrics needs it: Prometheus sends the read-only one if there is one (from a file).
	@token="$${KUBEPREDICT_READ_TOKEN:-$$KUBEPREDICT_API_TOKEN}"; if [ -n "$$token" ]; then \
	  (umask 077; printf '%s' "$$token" > $(DATA)/prometheus/token); \
	  sed -i 's|^    metrics_path: /metrics$$|&\n    authorization: {type: Bearer, credentials_file: $(abspath $(DATA))/prometheus/token}|' \
	    $(DATA)/prometheus/prometheus.yml; fi
	@rm -rf $(DATA)/prometheus/rules && cp -r infra/prometheus/rules $(DATA)/prometheus/rules
	@echo "Prometheus on http://127.0.0.1:$(PROMETHEUS_PORT)/ scraping http://127.0.0.1:$(PORT)/metrics"
	$(PROMETHEUS) --config.file=$(DATA)/prometheus/prometheus.yml \
	  --storage.tsdb.path=$(DATA)/prometheus/tsdb \
	  --web.listen-address=127.0.0.1:$(PROMETHEUS_PORT) --web.enable-lifecycle
