# jobyard — the two commands of the quick start are `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PEERS_VENV := .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint fmt venv system-deps bench bench-peers peers-deps clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

## make run: install into .venv and start server + local workers on SQLite under ./var
## A graceful stop exits 0 and so does make:
## - in a terminal, job control (set -m) makes the server the terminal's foreground job:
##   Ctrl-C reaches the server alone, not make (which would report "Interrupt" and die
##   of the signal whatever the server did);
## - otherwise the server replaces the recipe's shell (exec), so a SIGTERM sent to make's
##   child reaches the server itself, and its exit code is make's.
run: venv
	@echo "JOBYARD_HOME=$${JOBYARD_HOME:-./var} $(BIN)/jobyard up --example"
	@export JOBYARD_HOME="$${JOBYARD_HOME:-./var}"; \
	if [ -t 0 ]; then set -m; $(BIN)/jobyard up --example; \
	else exec $(BIN)/jobyard up --example; fi

## system packages the tests need: PostgreSQL server binaries (initdb, pg_ctl) for the
## store suite; a JDK and Quartz 2.3 (the reference for cron conformance); bubblewrap (the
## namespace job sandbox), Debian's python3 (a Python every job uid may run) and Debian's
## chromium (the browser test of /docs and /redoc drives it through Playwright)
system-deps:
	@missing=""; \
	if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		missing="$$missing postgresql"; fi; \
	if ! command -v javac >/dev/null 2>&1; then missing="$$missing openjdk-17-jdk-headless"; fi; \
	if ! ls /usr/share/java/quartz2*.jar >/dev/null 2>&1; then missing="$$missing libquartz2-java"; fi; \
	if ! command -v bwrap >/dev/null 2>&1; then missing="$$missing bubblewrap"; fi; \
	if [ ! -x /usr/bin/python3 ]; then missing="$$missing python3"; fi; \
	if [ ! -x /usr/bin/chromium ]; then missing="$$missing chromium"; fi; \
	if [ -n "$$missing" ]; then \
		echo "Installing with apt-get:$$missing"; \
		$(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	else \
		echo "System packages for the tests: present (PostgreSQL, JDK, Quartz, bubblewrap, python3, chromium)"; \
	fi

lint: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

fmt: venv
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

## make test: everything CI checks — lint, then the whole suite on SQLite and PostgreSQL.
## The suite mostly waits (servers starting, jobs running), so it runs in lanes:
## - two pytest-xdist processes share most of it, a test file each at a time (module
##   fixtures, such as a file's own PostgreSQL cluster, start once);
## - tests marked `beside` run in one more pytest process at the same time: those that
##   spend minutes on the wall clock (a server kept down for three minutes, schedules
##   firing over five) and those that cannot run under xdist (schemathesis' fuzzing
##   collects one test per API operation only in a plain pytest process).
## The target fails if either run fails; the `beside` output follows the other's.
test: venv system-deps lint
	@mkdir -p var; \
	$(BIN)/pytest -q -m beside >var/test-beside.log 2>&1 & beside=$$!; \
	$(BIN)/pytest -q -n 2 --dist loadfile -m 'not beside'; rest=$$?; \
	wait $$beside; alongside=$$?; \
	echo "== tests run beside the others (pytest -m beside) =="; \
	cat var/test-beside.log; \
	test $$rest -eq 0 && test $$alongside -eq 0

bench: venv
	$(BIN)/python benchmarks/run_all.py

## the peers' own venv (Celery with Redis, RQ): apart from .venv, so that the two stacks
## never share packages
$(PEERS_STAMP): benchmarks/peers/requirements.txt
	$(PY) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install -q --upgrade pip
	$(PEERS_VENV)/bin/python -m pip install -q -r benchmarks/peers/requirements.txt
	touch $(PEERS_STAMP)

## Debian's redis-server (the broker of Celery and RQ) when it is missing
peers-deps:
	@if ! command -v redis-server >/dev/null 2>&1 && [ ! -x /usr/bin/redis-server ]; then \
		echo "Installing with apt-get: redis-server"; \
		$(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 \
			apt-get install -y -q --no-install-recommends redis-server; \
	else \
		echo "System packages for the peer benchmark: present (redis-server)"; \
	fi

## make bench-peers: jobyard (local slots on SQLite and PostgreSQL; remote workers on
## PostgreSQL) against Celery + Redis and RQ, same workload, one run (ARGS="--rounds 3",
## ARGS="--systems jobyard-remote,celery" etc. passes flags to the driver). PostgreSQL's
## server binaries (initdb, as for the pg tests) for the PostgreSQL systems.
bench-peers: venv peers-deps $(PEERS_STAMP)
	$(BIN)/python benchmarks/peers/bench_peers.py --peers-python $(PEERS_VENV)/bin/python $(ARGS)

clean:
	rm -rf $(VENV) $(PEERS_VENV) var .pytest_cache .mypy_cache .ruff_cache
