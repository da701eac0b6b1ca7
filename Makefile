# Two set-up commands that work on a fresh machine:
#   make demo   builds the environment, then runs the main job on built-in data
#   make test   builds the environment, then runs the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lossnet-installed

.PHONY: env demo test bench clean

env: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: these machines serve exactly this pair from local disk
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: env
	$(VENV)/bin/lossnet demo --out lossnet-out/demo

test: env
	$(PY) -m pytest -q

bench: env
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) lossnet-out .pytest_cache
