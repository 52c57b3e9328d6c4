# The two commands of the README: `make demo` (the main job) and `make test` (every test).
# Both build their own virtualenv in .venv with pinned versions (constraints.txt).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo test bench schemas constraints clean

$(INSTALLED): setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt ".[tests,warehouse]"
	touch $(INSTALLED)

demo: $(INSTALLED)
	$(BIN)/segment-profile-warehouse demo

test: $(INSTALLED)
	$(BIN)/python -m pytest

bench: $(INSTALLED)
	$(BIN)/python -m benchmarks.run

schemas: $(INSTALLED)
	$(BIN)/python scripts/generate_schemas.py

constraints: $(INSTALLED)
	{ head -2 constraints.txt; $(BIN)/pip freeze --exclude source-segment-profile | grep -v '^-e'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) demo-output bench-output build *.egg-info
