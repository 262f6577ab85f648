# Two entry points for a fresh machine: `make demo` (the main job) and `make test`.
# `make results` (maintainers) regenerates the committed reports in results/.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Configs whose reports are committed under results/NAME.
REPORTS := demo ivae icebeem depth segments samples dimension mixings

.PHONY: demo results test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Writes to the git-ignored runs/demo (the default --out) and prints the report: a fresh clone
# stays clean.
demo: $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[baselines]"
	$(BIN)/nica run demo

# Regenerates the committed reports, results/NAME for each NAME in REPORTS, and the baselines'
# validation (results/baselines: the ivae-original and icebeem-2000 configs).
results: $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[baselines]"
	for name in $(REPORTS); do $(BIN)/nica run $$name --out results/$$name || exit 1; done
	$(BIN)/python -m experiments.baselines --out results/baselines

test: $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[test]"
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
