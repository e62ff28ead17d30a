# Two entry points: `make demo` (the main job on the built-in example) and `make test`
# (`make demo-check` runs the demo twice and compares the files).
# Each creates .venv when missing and installs the package. With no torch present, the
# install takes torch 2.13.0 (the local CPU wheel on this kind of machine) before the
# package's own `torch>=2.2` requirement is resolved, so no multi-GB CUDA build is pulled.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dynid-installed

.PHONY: demo demo-check test test-all bench install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	@$(PY) -m pip install -q -e ".[test,scip,onnx]"
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/dynid run examples/brusselator.toml

# the demo again, from scratch in a second folder, then every file compared (timings aside):
# "identical" or the list of differences (exit 1)
demo-check: $(STAMP)
	$(VENV)/bin/dynid run examples/brusselator.toml
	rm -rf runs/brusselator-again
	$(VENV)/bin/dynid run examples/brusselator.toml --out-dir runs/brusselator-again
	$(PY) -m dynid.reproduce runs/brusselator runs/brusselator-again

test: $(STAMP)
	@$(PY) -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

test-all: $(STAMP)
	@$(PY) -m pytest -q -m "slow or not slow"

bench: $(STAMP)
	@for b in benchmarks/*_bench.py; do $(PY) $$b --quick || exit 1; done

clean:
	rm -rf runs .pytest_cache build *.egg-info
