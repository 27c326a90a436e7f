# Quick start:  make run   (the sample node)   |   make test   (lint, suite)
# make docs: the documentation in docs/_build/html (Sphinx, warnings are errors)
# A Python 3.12 that runs is preferred (also one installed by pyenv but not
# selected): slapos.core's slapgrid imports there, which the compatibility
# test needs. Any Python 3.9+ runs everything else.
PY312_CANDIDATES = python3.12 $(wildcard $(shell pyenv root 2>/dev/null)/versions/3.12*/bin/python3.12)
PYTHON ?= $(firstword $(foreach p,$(PY312_CANDIDATES),$(shell $(p) -c 'import sys; print(sys.executable)' 2>/dev/null)) $(shell command -v python3))
VENV ?= .venv
BIN = $(VENV)/bin
# the build backend's advice on editable installs is not for this tree's users
PIP_INSTALL = PYTHONWARNINGS=ignore $(BIN)/python -m pip install -q

.PHONY: run test docs bench matrix spawn-pythons clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: setup.py | $(BIN)/python
	$(PIP_INSTALL) -e .
	touch $@

$(VENV)/.installed-test: setup.py | $(BIN)/python
	$(PIP_INSTALL) -e '.[test]'
	touch $@ $(VENV)/.installed

$(VENV)/.installed-docs: setup.py | $(BIN)/python
	$(PIP_INSTALL) -e '.[docs]'
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/supervisor-slapos-supervisord -n -c sample.conf

# the linter first (ruff.toml: the whole tree), then the suite
test: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest tests

docs: $(VENV)/.installed-docs
	$(BIN)/python -m sphinx -E -W --keep-going -q -b html docs docs/_build/html

bench: $(VENV)/.installed-test
	$(BIN)/python -m bench --output BENCHMARKS.md

# The whole suite on Python 3.9 to 3.13 x supervisor 4.2.5 and 4.3.0 (tox.ini);
# with pyenv, every installed 3.x is made visible to tox.
matrix: $(VENV)/.installed-test
	$(BIN)/python -m pip install -q tox
	PYENV_VERSION="$(shell pyenv versions --bare 2>/dev/null | grep -E '^3\.(9|1[0-3])\.' | paste -sd: -)" $(BIN)/tox $(TOXARGS)

# The floor spawn against supervisor's own on every supported Python (a venv
# per pyenv Python in .venv-spawn/, supervisor $(SPAWN_SUPERVISOR)); a Python
# that is not there is named and fails the target, or with SPAWN_MISSING=skip
# is named and skipped (SPAWN_PYTHONS to choose).
SPAWN_PYTHONS ?= 3.9 3.10 3.11 3.12 3.13
SPAWN_MISSING ?= fail
SPAWN_SUPERVISOR ?= 4.3.0
SPAWN_TESTS = tests/test_spawn_equivalence.py tests/test_internals.py
spawn-pythons:
	@set -e; for v in $(SPAWN_PYTHONS); do \
	  py=$$(ls -d $$(pyenv root 2>/dev/null)/versions/$$v.*/bin/python$$v 2>/dev/null | tail -n 1); \
	  [ -n "$$py" ] || py=$$(command -v python$$v || true); \
	  if [ -z "$$py" ]; then \
	    echo "spawn-pythons: no Python $$v here$(if $(filter skip,$(SPAWN_MISSING)),: skipped)" >&2; \
	    [ "$(SPAWN_MISSING)" = skip ] && continue; exit 1; fi; \
	  venv=.venv-spawn/$$v-sup$(SPAWN_SUPERVISOR); \
	  if [ ! -e $$venv/.installed ]; then \
	    $$py -m venv $$venv && $$venv/bin/python -m pip install -q \
	      -e . pytest pytest-timeout 'setuptools<81' \
	      supervisor==$(SPAWN_SUPERVISOR) && touch $$venv/.installed; fi; \
	  echo "== Python $$v, supervisor $(SPAWN_SUPERVISOR)"; \
	  $$venv/bin/python -m pytest -q -p no:cacheprovider $(SPAWN_TESTS); \
	done

clean:
	rm -rf $(VENV) .venv-spawn build dist *.egg-info
	find sample/var -mindepth 1 ! -name .gitkeep -delete
	find sample/partitions -name '*.conf' ! -name slappart1-monitor.conf -delete
	rm -f sample/instance/*/.*.log
	rm -rf docs/_build
