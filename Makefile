# The README's two commands. Each creates the virtual environment from
# setup.cfg's pinned dependencies on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# Trains, evaluates and exports on synthetic MovieLens-shaped data (no download),
# then recommends from the export.
demo: $(VENV)/.installed
	$(BIN)/python -m ncf_tfrs.train --flagfile configs/demo.flags
	$(BIN)/python -m ncf_tfrs.recommend --export_dir export --model_name ncf_tfrs --user_id 1 --k 10

test: $(VENV)/.installed
	$(BIN)/python -m pytest

bench: $(VENV)/.installed
	$(BIN)/python -m ncf_tfrs.bench --config synthetic-small

clean:
	rm -rf $(VENV) build *.egg-info
