# jobyard — the two commands of the quick start are `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint fmt venv system-deps bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

## make run: install into .venv and start server + local workers on SQLite under ./var
run: venv
	JOBYARD_HOME=$${JOBYARD_HOME:-./var} $(BIN)/jobyard up --example

## system packages the tests need: PostgreSQL server binaries (initdb, pg_ctl) for the
## store suite; a JDK and Quartz 2.3 (the reference for cron conformance); bubblewrap (the
## namespace job sandbox) and Debian's python3 (a Python every job uid may run)
system-deps:
	@missing=""; \
	if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		missing="$$missing postgresql"; fi; \
	if ! command -v javac >/dev/null 2>&1; then missing="$$missing openjdk-17-jdk-headless"; fi; \
	if ! ls /usr/share/java/quartz2*.jar >/dev/null 2>&1; then missing="$$missing libquartz2-java"; fi; \
	if ! command -v bwrap >/dev/null 2>&1; then missing="$$missing bubblewrap"; fi; \
	if [ ! -x /usr/bin/python3 ]; then missing="$$missing python3"; fi; \
	if [ -n "$$missing" ]; then \
		echo "Installing with apt-get:$$missing"; \
		$(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	else \
		echo "System packages for the tests: present (PostgreSQL, JDK, Quartz, bubblewrap, python3)"; \
	fi

lint: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

fmt: venv
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

## make test: everything CI checks — lint, then the whole suite on SQLite and PostgreSQL
test: venv system-deps lint
	$(BIN)/pytest -q

bench: venv
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
