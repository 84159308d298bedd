# The two commands of the README: `make demo` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint setup clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[ros,onnx,dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/refscale demo

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q tests

lint: $(STAMP)
	$(PY) -m ruff check .

clean:
	rm -rf demo-output runs .train-data .bench-data
