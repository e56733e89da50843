# Every routine task of Açık Kapı. `make run` starts the whole system on the default ports,
# `make stop` stops it, `make test` runs every test on a stack of its own beside it.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PY := .venv/bin/python
STACK := $(PY) -m deploy.local.stack
RUN_DATA := $(CURDIR)/.ak/run
TEST_DATA := $(CURDIR)/.ak/test

# The test stack: its own data folder and ports, so `make test` can run while `make run` does.
# The same settings the services read (services/common/settings.py, deploy/local/stack.py).
TEST_STACK_ENV := AK_DATA_DIR=$(TEST_DATA) \
	AK_KAFKA_BOOTSTRAP=127.0.0.1:19092 AK_MONGO_URI=mongodb://127.0.0.1:27018 \
	AK_SMS_GATEWAY_URL=http://127.0.0.1:14013/cgi-bin/sendsms AK_SMTP_PORT=2526 \
	AK_ZOOKEEPER_PORT=12181 AK_KANNEL_ADMIN_PORT=14000 AK_KANNEL_SMSBOX_PORT=14001 \
	AK_KANNEL_SMSC_PORT=10100 \
	AK_INTAKE_PORT=18001 AK_ROUTING_PORT=18002 AK_TRACKING_PORT=18003 \
	AK_NOTIFICATION_PORT=18004 AK_REPORTING_PORT=18005

# What lint and format look at.
PY_SOURCES := services tests $(wildcard deploy/local bench)
# Strict (pyproject.toml): every service and the test helpers.
MYPY_TARGETS = services deploy/local/stack.py tests/support.py tests/conftest.py tests/e2e/conftest.py \
	tests/unit/test_intake_handlers.py tests/unit/test_routing_handlers.py \
	tests/unit/test_tracking_handlers.py tests/unit/test_local_stack.py tests/browser/conftest.py

.PHONY: help install run stop status institution test test-unit lint types fmt bench bench-cost bench-pii bench-scale bench-chaos bench-routing bench-officer bench-sms bench-deadlines bench-metrics bench-reports bench-rebuild bench-chronic

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: ## install what is missing (apt packages, .venv, Kafka); cached, seconds when done
	@deploy/local/install.sh

# `make run BENCH=1`: for `make bench`, which applies as each of the demo registry's 2,000
# people many times a day: the daily limits are still counted, but at 1,000,000.
BENCH_LIMITS = $(if $(BENCH),AK_DAILY_LIMIT_PER_TCKN=1000000 AK_DAILY_LIMIT_PER_PHONE=1000000)

run: install ## start the whole system on the default ports, load demo data, print the URLs
	@export AK_DATA_DIR=$(RUN_DATA) AK_MONGO_PER_SERVICE=1 $(BENCH_LIMITS); \
	$(STACK) start; \
	eval "$$($(STACK) env)"; \
	if [[ -f deploy/local/seed_demo.py ]]; then $(PY) deploy/local/seed_demo.py; fi; \
	echo; \
	echo "Açık Kapı is running (data in $$AK_DATA_DIR; 'make stop' stops it)."; \
	for svc in intake routing tracking notification reporting; do \
		port_var="AK_$${svc^^}_PORT"; \
		printf '  %-13s http://127.0.0.1:%s/docs\n' "$$svc" "$${!port_var}"; \
	done; \
	echo "  web form      http://127.0.0.1:$$AK_INTAKE_PORT/basvuru"; \
	echo "  counter       http://127.0.0.1:$$AK_INTAKE_PORT/gise (paste an officer token)"; \
	echo "  status page   $$AK_PUBLIC_TRACKING_URL"; \
	echo "  dashboard     http://127.0.0.1:$$AK_REPORTING_PORT/pano (log in with a supervisor token)"; \
	echo "  public report http://127.0.0.1:$$AK_REPORTING_PORT/rapor"; \
	echo "  Prometheus    http://127.0.0.1:$$AK_PROMETHEUS_PORT (alerts: /alerts; dashboards: deploy/monitoring/grafana-*.json)"; \
	echo "  a token       $(PY) -m services.common.devtoken --role officer"; \
	echo "                (roles: officer, counter_officer, routing_officer, institution --institution CODE,"; \
	echo "                 supervisor --province 20, governor, auditor, admin, citizen: docs/security.md)"; \
	echo "  a citizen     $(PY) -m services.intake.identity --demo (people the identity check knows)"; \
	echo "  SMS sent      $$AK_DATA_DIR/fakesmsc.out (the web form's codes too)"; \
	echo "  e-mail sent   $$AK_DATA_DIR/mail (a Maildir)"

stop: ## stop everything `make run` started
	@AK_DATA_DIR=$(RUN_DATA) $(STACK) stop

status: ## show what `make run` started and whether it is ready
	@AK_DATA_DIR=$(RUN_DATA) $(STACK) status || true

institution: ## an institution's Kafka user on `make run`'s broker: make institution CODE=DESKI
	@[[ -n "$(CODE)" ]] || { echo "usage: make institution CODE=<institution code>" >&2; exit 2; }
	@AK_DATA_DIR=$(RUN_DATA) $(PY) -m deploy.local.kafka_acl add-institution "$(CODE)"

# The end-to-end ring first, on a clean broker: its five service processes join the services'
# own consumer groups and stop when its module ends, before any integration module runs an
# in-process service (the two would split each other's messages). Run after the integration
# tests, they would also first have to replay every test event on the shared topics.
TEST_PATHS = tests/e2e $(filter-out tests/e2e tests/__pycache__,$(patsubst %/,%,$(wildcard tests/*/)))

# A clean infrastructure stack of its own (the e2e tests start the services themselves); it is
# stopped whatever happens (its messages on stderr, so pytest's summary stays the last line of
# stdout), and the result is pytest's: exit code 5, no tests ran, fails too.
test: install ## run the whole test suite on a stack of its own ports (.ak/test)
	@export $(TEST_STACK_ENV) AK_STACK_INFRA_ONLY=1; \
	$(STACK) stop >/dev/null; \
	rm -rf "$$AK_DATA_DIR"; \
	trap 'rc=$$?; $(STACK) stop >&2; ((rc == 0)) || echo "stack logs: $$AK_DATA_DIR/logs" >&2; exit $$rc' EXIT; \
	$(STACK) start; \
	eval "$$($(STACK) env)"; \
	.venv/bin/pytest -q -p no:cacheprovider --cov --cov-report=term $(TEST_PATHS)

test-unit: ## the unit tests only: no stack needed
	@.venv/bin/pytest -q -p no:cacheprovider tests/unit

lint: install ## ruff check, ruff format --check, mypy --strict on the services and test helpers
	@.venv/bin/ruff check $(PY_SOURCES)
	@.venv/bin/ruff format --check $(PY_SOURCES)
	@$(MAKE) --no-print-directory types

types: ## mypy --strict on the services, the stack supervisor and the test helpers
	@.venv/bin/mypy $(MYPY_TARGETS)

fmt: ## format and auto-fix the Python code
	@.venv/bin/ruff check --fix $(PY_SOURCES)
	@.venv/bin/ruff format $(PY_SOURCES)

bench: ## measure the pipeline against the running stack (`make run BENCH=1` first)
	@[[ -f bench/pipeline.py ]] || { echo "bench/pipeline.py does not exist yet" >&2; exit 1; }
	@eval "$$(AK_DATA_DIR=$(RUN_DATA) $(STACK) env)"; $(PY) bench/pipeline.py

bench-officer: ## time from an officer's route action to the institution's topic (`make run` first)
	@eval "$$(AK_DATA_DIR=$(RUN_DATA) $(STACK) env)"; $(PY) bench/officer_route.py

bench-cost: ## CPU and Kafka messages one application costs the running stack (`make run` first)
	@eval "$$(AK_DATA_DIR=$(RUN_DATA) $(STACK) env)"; $(PY) bench/cost_per_application.py

bench-pii: ## intake's throughput with and without PII encryption, alternating rounds, as a ratio (`make run` first)
	@eval "$$(AK_DATA_DIR=$(RUN_DATA) $(STACK) env)"; $(PY) bench/pii_cost.py

bench-scale: ## the drain with 1, 2 and 3 routing and tracking processes (`make run` first)
	@eval "$$(AK_DATA_DIR=$(RUN_DATA) $(STACK) env)"; $(PY) bench/scale_out.py

# SIZES: the open applications at each step (a quick run: `make bench-deadlines SIZES=2000,20000`).
bench-deadlines: ## a deadline-watcher pass with 10k, 100k and 1M open applications (`make run` first)
	@eval "$$(AK_DATA_DIR=$(RUN_DATA) $(STACK) env)"; \
	$(PY) bench/deadlines.py $(if $(SIZES),--sizes $(SIZES))

bench-chaos: install ## 10,000 applications at 200/s, every service killed once, on a stack of its own
	@$(PY) bench/chaos.py

bench-routing: install ## routing's learned suggestions vs keywords on held-out texts, offline (no stack)
	@$(PY) bench/routing_eval.py

bench-sms: ## SMS segments per template before/after the Turkish GSM tables, offline (no stack)
	@$(PY) bench/sms_encoding.py

bench-metrics: ## size of each service's /metrics and the time to scrape it (`make run` first)
	@eval "$$(AK_DATA_DIR=$(RUN_DATA) $(STACK) env)"; $(PY) bench/metrics_scrape.py

# APPLICATIONS: how many the read model holds (a quick run: `make bench-reports APPLICATIONS=50000`).
bench-reports: ## reports and the fold with 1,000,000 applications in reporting's read model (`make run` first)
	@eval "$$(AK_DATA_DIR=$(RUN_DATA) $(STACK) env)"; $(PY) bench/reporting_scale.py --applications $(or $(APPLICATIONS),1000000)

bench-rebuild: ## `python -m services.reporting rebuild` over the running stack's topics, into a database of its own (`make run` first)
	@eval "$$(AK_DATA_DIR=$(RUN_DATA) $(STACK) env)"; AK_DB_PREFIX=benchrebuild $(PY) -m services.reporting rebuild --yes

bench-chronic: ## chronic-problem detection on the labelled set: found and false rates, offline (no stack)
	@$(PY) bench/chronic.py
