# The two commands a new user needs: `make run` and `make test`. See README.md.
UV ?= uv
PY := .venv/bin/python

.PHONY: run test key lint format bench outages chaos replicas system clean

run: system .venv/.synced  ## start the service (local Kafka + PostgreSQL unless configured)
	$(PY) -m services.coupons.cli run

test: system .venv/.synced  ## the whole suite, on real Kafka and PostgreSQL
	$(PY) -m pytest

key: .venv/.synced  ## print a new API key: make key SCOPE=admin NAME=me (local stack or DATABASE_URL)
	@$(PY) -m services.coupons.cli keys create --scope $(or $(SCOPE),admin) --name $(or $(NAME),local)

lint: system .venv/.synced  ## ruff + mypy, as CI runs them
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/python -m pytest -q -p no:cacheprovider tests/unit/test_architecture.py  # no import cycle

format: .venv/.synced
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

system:  ## Java, Maven, PostgreSQL (Debian's packages) and uv, when missing
	@deploy/install-system-packages

.venv/.synced: pyproject.toml uv.lock
	$(UV) sync --frozen
	@touch $@

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache

bench: .venv/.synced  ## benchmarks: print figures (see bench/)
	@WITH_BENCH=1 deploy/install-system-packages
	$(PY) bench/startup.py --runs 3
	$(PY) bench/startup.py --runs 3 --cold
	$(PY) bench/checkout.py --runs 3
	$(PY) bench/lane.py
	$(PY) bench/redemption_trace.py
	$(PY) bench/codes.py --runs 3
	$(PY) bench/stripe_bridge.py --runs 3
	$(PY) bench/read_models.py --runs 3
	$(PY) bench/contacts.py --runs 3
	$(PY) bench/contacts.py --seed copy --runs 3
	$(PY) bench/dashboard.py
	$(PY) bench/automations.py --runs 3

outages: system .venv/.synced  ## Kafka and PostgreSQL stopped 60 s and 3 min under load; prints recovery times (~10 min)
	$(PY) bench/outages.py

chaos: system .venv/.synced  ## SIGKILL each component, restart Kafka and PostgreSQL, fill Kafka's disk, under load; checks every guarantee (5-7 min, root for the tmpfs)
	$(PY) bench/chaos.py $(CHAOS_ARGS)

replicas: system .venv/.synced  ## throughput with 1, 2, 3 replicas over 6 partitions; one killed under load (~4 min)
	$(PY) bench/replicas.py $(REPLICAS_ARGS)
