# Two entry points for a fresh machine: `make demo` (the main job) and `make test`.
# `make results` (maintainers) regenerates the committed reports in results/.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Configs whose reports are committed under results/NAME.
REPORTS := demo ivae icebeem depth segments samples dimension mixings
# Configs NAME-relative, committed under results/gradient_benchmarks/relative/NAME.
RELATIVE := ivae icebeem dimension

.PHONY: demo results test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Writes to the git-ignored runs/demo (the default --out) and prints the report: a fresh clone
# stays clean.
demo: $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[baselines]"
	$(BIN)/nica run demo

# Regenerates the committed reports, results/NAME for each NAME in REPORTS, the benchmarks in
# the relative gradient mode (results/gradient_benchmarks/relative/NAME), the baselines'
# validation (results/baselines: the ivae-original and icebeem-2000 configs), the
# representability of the true demixers (results/representability), and the index
# results/README.md.
results: $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[baselines]"
	for name in $(REPORTS); do $(BIN)/nica run $$name --out results/$$name || exit 1; done
	for name in $(RELATIVE); do \
		$(BIN)/nica run $$name-relative --out results/gradient_benchmarks/relative/$$name || exit 1; \
	done
	$(BIN)/python -m experiments.baselines --out results/baselines
	$(BIN)/python -m experiments.representability --out results/representability
	$(BIN)/python -m experiments.results_index

test: $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[test]"
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
