# Two entry points: `make demo` (set up and run the DuckDB demo) and `make test` (the full suite, as CI runs it).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install system-deps snapshots clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# PostgreSQL server, Java 17 (Spark) and Chromium, for the engine and browser tests
system-deps:
	scripts/install_system_deps.sh

demo: install
	rm -rf demo
	$(BIN)/kpimetrics init demo
	cd demo && ../$(BIN)/kpimetrics seed && ../$(BIN)/kpimetrics run ; \
	  ../$(BIN)/kpimetrics status

# KPIMETRICS_REQUIRE_ENGINES: a test whose engine (PostgreSQL, Spark, Chromium) is missing fails, never skips
test: install system-deps
	KPIMETRICS_REQUIRE_ENGINES=1 $(BIN)/python -m pytest -q -p no:cacheprovider

snapshots: install
	$(BIN)/python -m pytest -q tests/test_compile.py --update-snapshots

clean:
	rm -rf $(VENV) demo .pytest_cache
