# `make repro`: install and run the whole pipeline on the embedded sample.
# `make test`:  install and run the test suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install repro test lint format bench quality long-run clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

repro: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

test: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python benchmarks/crop.py
	$(BIN)/python benchmarks/train_step.py
	$(BIN)/python benchmarks/mifid.py
	$(BIN)/python benchmarks/submission.py
	$(BIN)/python benchmarks/input_pipeline.py

quality: install
	$(BIN)/python benchmarks/quality.py --steps 7200 --seeds 0,1,2

long-run: install
	$(BIN)/python benchmarks/long_run.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
