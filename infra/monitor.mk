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
	@rm -rf $(DATA)/prometheus/rules && cp -r infra/prometheus/rules $(DATA)/prometheus/rules
	@echo "Prometheus on http://127.0.0.1:$(PROMETHEUS_PORT)/ scraping http://127.0.0.1:$(PORT)/metrics"
	$(PROMETHEUS) --config.file=$(DATA)/prometheus/prometheus.yml \
	  --storage.tsdb.path=$(DATA)/prometheus/tsdb \
	  --web.listen-address=127.0.0.1:$(PROMETHEUS_PORT) --web.enable-lifecycle
