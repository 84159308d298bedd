# The two commands of the README: `make demo` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint setup clean

ROS_PKG := ros2_ws/src/refscale_ros

# The library first, then the ROS 2 package (ament_python; pip builds it from its setup.py): it
# brings `refscale record` / `reconstruct-node` / `demo` through the `refscale.commands` entry point.
$(STAMP): pyproject.toml $(ROS_PKG)/setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[ros,onnx,dev,fleet]'
	$(PY) -m pip install -q -e $(ROS_PKG)
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
