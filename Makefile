# argusflow: make run | make test | make lint | make bench
#
# Needs Python >= 3.11 as `python3` (override: make PYTHON=python3.12 ...).  Everything goes
# into .venv.  The stamp files record what has been installed, so a second `make test` does
# not reinstall (they are rebuilt when pyproject.toml changes).

PYTHON      ?= python3
VENV        := .venv
PY          := $(VENV)/bin/python
SAMPLE      := samples/mix.argus
RA_ARGS     ?=
PYTEST_ARGS ?=
BENCH_ARGS  ?=

# The real tools that are the test oracle, and the Debian packages they come from.
ORACLE_TOOLS := /usr/sbin/argus /usr/bin/ra /usr/bin/racluster /usr/bin/rasort /usr/bin/tcpreplay
DEB_PACKAGES := argus-server argus-client tcpreplay iproute2

# CI: show the slowest tests, so that the suite can be kept well inside its time limit.
ifdef CI
PYTEST_CI_ARGS := --durations=15 -rfE
endif

.PHONY: run test lint bench deps clean help

help:
	@echo "make run    install into .venv; our argus turns samples/mix.pcap into records, our ra prints them"
	@echo "make test   also install test deps (and, as root, the real Argus tools); run pytest"
	@echo "make lint   ruff over src, tests, bench"
	@echo "make bench  ours/real timing table (BENCH_ARGS='--sizes small,medium,large')"

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else \
	    "argusflow needs Python >= 3.11; this $(PYTHON) is %d.%d" % sys.version_info[:2])'
	@# Debian's python3 lacks ensurepip until python3-venv is installed: as root, install it.
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
	        export DEBIAN_FRONTEND=noninteractive; \
	        apt-get update -q < /dev/null && apt-get install -y -q python3-venv < /dev/null && \
	        $(PYTHON) -m venv $(VENV); \
	    else echo "make: '$(PYTHON) -m venv' failed; on Debian: apt-get install python3-venv" >&2; exit 1; fi; }

$(VENV)/.installed-run: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[test]'
	@touch $@ $(VENV)/.installed-run

# The main job on the bundled sample: our probe turns the capture into Argus records and our ra
# prints them (the article's `argus -r ... -w - | ra -r -`).
CAPTURE := samples/mix.pcap
run: $(VENV)/.installed-run
	$(VENV)/bin/argus -X -r $(CAPTURE) -w - | $(VENV)/bin/ra $(RA_ARGS) -r -

# Real Argus tools (and tcpreplay, ip for the live tests): installed when missing and we are
# root.  argus-server's postinst starts argus.service under systemd; a policy-rc.d that
# answers 101 stops that, and a daemon started anyway is stopped again through systemd.
deps:
	@missing=""; for t in $(ORACLE_TOOLS); do [ -x $$t ] || missing="$$missing $$t"; done; \
	[ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || [ -x /usr/bin/ip ] || missing="$$missing ip"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
	    echo "make test: missing$$missing; tests that need them will skip." >&2; \
	    echo "           install as root: apt-get install $(DEB_PACKAGES)" >&2; exit 0; fi; \
	echo "make test: installing $(DEB_PACKAGES) (missing:$$missing)"; \
	made_policy=""; \
	if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d; \
	    made_policy=1; fi; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update -q < /dev/null && \
	apt-get install -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
	    $(DEB_PACKAGES) < /dev/null; rc=$$?; \
	[ -z "$$made_policy" ] || rm -f /usr/sbin/policy-rc.d; \
	if [ -d /run/systemd/system ]; then \
	    systemctl disable --now argus.service > /dev/null 2>&1 || true; fi; \
	exit $$rc

# pytest exits 5 when it collected no test at all (e.g. a PYTEST_ARGS -k that matches nothing).
# That is not a failure of the code, so it must not fail CI.
test: $(VENV)/.installed-test deps
	@rc=0; $(PY) -m pytest $(PYTEST_CI_ARGS) $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5), treated as a pass"; rc=0; fi; \
	exit $$rc

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check src tests bench

bench: $(VENV)/.installed-run
	$(PY) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf .pytest_cache .ruff_cache .hypothesis build
	find src tests bench -name __pycache__ -type d -prune -exec rm -rf {} +
