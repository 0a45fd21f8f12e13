# Two entry points: `make demo` (set up and run the DuckDB demo) and `make test` (the full suite, as CI runs it).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast install dbt-env lock system-deps snapshots clean

# Installs exactly the versions in constraints.txt (what CI tested), build dependencies included, then
# checks that nothing unpinned slipped in. `make lock` refreshes constraints.txt.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt pip setuptools wheel
	$(BIN)/pip install --quiet -c constraints.txt --build-constraint constraints.txt -e '.[test]'
	$(BIN)/python scripts/lock.py check
	touch $(STAMP)

install: $(STAMP)

# dbt for the tests only (SPEC §8): its own venv, never a dependency of kpimetrics. dbt-core stays below 1.12,
# whose parser package downloads a wheel while it builds; tests/dbt/constraints.txt pins what resolved.
DBT_VENV  := .venv-dbt
DBT_STAMP := $(DBT_VENV)/.installed

$(DBT_STAMP): tests/dbt/constraints.txt
	$(PYTHON) -m venv $(DBT_VENV)
	$(DBT_VENV)/bin/pip install --quiet -c tests/dbt/constraints.txt 'dbt-core<1.12' dbt-duckdb dbt-postgres dbt-metricflow
	touch $(DBT_STAMP)

dbt-env: $(DBT_STAMP)

# resolve pyproject.toml's dependencies afresh and pin what resolved; then run `make test` and commit
lock:
	$(PYTHON) scripts/lock.py refresh
	rm -f $(STAMP)

# PostgreSQL server, Java 17 (Spark) and Chromium, for the engine and browser tests
system-deps:
	scripts/install_system_deps.sh

demo: install
	rm -rf demo
	$(BIN)/kpimetrics init demo
	cd demo && ../$(BIN)/kpimetrics seed && ../$(BIN)/kpimetrics run ; \
	  ../$(BIN)/kpimetrics status

# KPIMETRICS_REQUIRE_ENGINES: a test whose engine (PostgreSQL, Spark, Chromium) is missing fails, never skips;
# --durations=30: every CI log ends with the slowest set-ups and tests, to see where the time limit goes;
# --dist loadgroup: the tests sharing a costly set-up run on one worker (tests/conftest.py), which makes it once
test: install system-deps dbt-env
	KPIMETRICS_REQUIRE_ENGINES=1 $(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist loadgroup --durations=30

# DuckDB only (no PostgreSQL, Spark, Chromium or dbt: building the dbt project takes ~25 s), for the edit-test loop: see "Development" in the README
test-fast: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist loadgroup -m "not postgres and not spark and not browser and not slow and not dbt"

snapshots: install
	$(BIN)/python -m pytest -q tests/test_compile.py --update-snapshots

clean:
	rm -rf $(VENV) demo .pytest_cache
