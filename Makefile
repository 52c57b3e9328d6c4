# The two commands of the README: `make demo` (the main job) and `make test` (every test).
# Both build their own virtualenv in .venv with pinned versions (constraints.txt).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo test bench schemas constraints clean

# The packages are installed as the image installs them (not editable), so a change to their
# sources must reinstall them: else `make test` would run the integration tests, which call the
# installed console script, against the code of the last install.
PACKAGE_SOURCES := $(shell find source_segment_profile segment_profile_emulator segment_profile_warehouse schemas -type f \( -name '*.py' -o -name '*.json' \) 2>/dev/null)

$(INSTALLED): setup.py constraints.txt $(PACKAGE_SOURCES)
	$(PYTHON) -m venv $(VENV)
	rm -rf build  # setuptools' staging folder: modules deleted from the sources would be installed from it
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt ".[tests,warehouse]"
	touch $(INSTALLED)

demo: $(INSTALLED)
	$(BIN)/segment-profile-warehouse demo

# Test files run on 4 processes (pytest-xdist), each file's tests in one process (they share its
# emulator and fixtures): most tests wait on servers and subprocesses, so 4 fit on 2 cores.
test: $(INSTALLED)
	$(BIN)/python -m pytest -n 4 --dist loadfile

bench: $(INSTALLED)
	$(BIN)/python -m benchmarks.run

schemas: $(INSTALLED)
	$(BIN)/python scripts/generate_schemas.py

constraints: $(INSTALLED)
	{ head -2 constraints.txt; $(BIN)/pip freeze --exclude source-segment-profile | grep -v '^-e'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) demo-output bench-output build *.egg-info
