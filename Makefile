# recon: two commands on a fresh machine -> `make demo` and `make test`.
PY      ?= python3
VENV    ?= .venv
VPY     := $(VENV)/bin/python
DATA    ?= data/synthetic.h5
RUN     ?= runs/demo
TEST_ARGS ?=

.PHONY: setup demo test test-all test-slow bench clean

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install --upgrade pip >/dev/null
	# torch first, pinned: on CPU machines this picks the CPU wheel (no CUDA download).
	$(VPY) -m pip install torch==2.13.0
	$(VPY) -m pip install -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VPY) -m pipelines.demo --data $(DATA) --out $(RUN)

test: setup
	$(VPY) -m pytest -q $(TEST_ARGS)

test-slow: setup
	$(VPY) -m pytest -q -m slow $(TEST_ARGS)

bench: setup
	$(VPY) -m pipelines.bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
