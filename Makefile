# The two commands: `make serve` and `make test`. Both set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_PG_URL ?= postgresql://postgres@127.0.0.1:5432/test

.PHONY: serve test test-sqlite test-postgres lint services node-deps bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

serve: $(STAMP)
	@echo "cohub: starting on http://$${COHUB_HOST:-127.0.0.1}:$${COHUB_PORT:-5000}/ (Ctrl-C stops it)"
	$(VENV)/bin/cohub serve

services:
	@bash scripts/ensure-services.sh

node-deps:
	@cd tests/js && (test -d node_modules/socket.io-client || npm install --no-audit --no-fund --silent)

lint: $(STAMP)
	$(VENV)/bin/ruff check cohub tests bench

test: $(STAMP) services node-deps lint
	@echo "== suite on SQLite =="
	COHUB_TEST_DB=sqlite $(PY) -m pytest -q -p no:cacheprovider
	@echo "== suite on PostgreSQL =="
	COHUB_TEST_DB=$(TEST_PG_URL) $(PY) -m pytest -q -p no:cacheprovider

test-sqlite: $(STAMP)
	COHUB_TEST_DB=sqlite $(PY) -m pytest -q -p no:cacheprovider

test-postgres: $(STAMP) services
	COHUB_TEST_DB=$(TEST_PG_URL) $(PY) -m pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) tests/js/node_modules
