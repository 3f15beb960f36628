# Two entry points for a fresh clone (only python3 and the package index needed):
#   make demo   set up .venv, synthesize the demo song, separate it with the embedded default (dsp)
#   make test   set up .venv, run the whole test suite (core and every plugin)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stemkit-installed
PLUGINS := $(sort $(wildcard plugins/*/pyproject.toml))

.PHONY: demo test lint bench setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml $(PLUGINS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# dsp moved into the core distribution; a .venv made before that still has the old stemkit-dsp
	$(BIN)/python -m pip uninstall --quiet --yes stemkit-dsp 2>/dev/null || true
	$(BIN)/python -m pip install --quiet -e ".[dev]" $(foreach p,$(PLUGINS),-e $(dir $(p)))
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/stemkit demo demo-song
	$(BIN)/stemkit separate demo-song/mixture.wav -o separated

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy src $(foreach p,$(PLUGINS),$(dir $(p))src)

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) demo-song separated .pytest_cache .mypy_cache
