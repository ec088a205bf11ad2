# rmq: `make run` starts a NameServer + Broker on local defaults; `make test` runs every test.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= ./data
TRIAL_JOBS ?= 2
TESTS ?= tests

.PHONY: run test lint install clean bench

$(VENV)/.installed: setup.py pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	touch $@

install: $(VENV)/.installed

run: $(VENV)/.installed
	$(VENV)/bin/twistd -n --pidfile= rmq-standalone --data $(DATA)

test: $(VENV)/.installed
	rm -f twisted/plugins/dropin.cache
	status=0; $(PY) -bb -W error::RuntimeWarning -m twisted.trial -j $(TRIAL_JOBS) $(TESTS) 2>&1 \
	  | tee .trial.log || status=$$?; \
	$(PY) .ci/trial_summary.py .trial.log $$status

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check rmq tests bench twisted/plugins
	$(VENV)/bin/mypy rmq tests
	$(VENV)/bin/mypy twisted/plugins/rmq_plugins.py

clean:
	rm -rf $(VENV) _trial_temp* .trial.log *.egg-info
