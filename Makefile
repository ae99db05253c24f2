# p2pfl: every target works on a fresh machine (2 cores, no GPU, offline).
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
TORCH   ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: install demo test test-fast bench lint clean results

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The CPU wheel first, pinned, so nothing later can pull a CUDA build.
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# The main job, offline, on the embedded Fashion-MNIST split.
demo: install
	$(BIN)/python -m p2pfl.demo

test: install
	$(BIN)/python -m pytest -q -rs $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -q -rs -m "not slow" $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m benchmarks

# Every README table, regenerated at a reduced size into results/<dir>/ (see README "Results").
# ONLY=demo,defence_table reruns a subset; FULL=1 (with $$P2PFL_DATA) adds the full-data tables.
results: install
	$(BIN)/python examples/make_results.py $(if $(ONLY),--only $(ONLY)) $(if $(filter 1,$(FULL)),--full-data)

lint: install
	$(BIN)/ruff check p2pfl tests benchmarks examples

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache .hypothesis runs
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
