# recon: two commands on a fresh machine -> `make demo` and `make test`.
PY      ?= python3
VENV    ?= .venv
VPY     := $(VENV)/bin/python
DATA    ?= data/synthetic.h5
RUN     ?= runs/demo
DEMO_ARGS ?=
TEST_ARGS ?=
# pytest-xdist workers: tests spend much of their time in subprocesses, kernel loads and file I/O, so
# two workers on two cores cut the wall time; --dist loadfile keeps a file's module fixtures in one worker.
TEST_WORKERS ?= auto
CHECKPOINT ?= $(RUN)
APP_ARGS ?=

GPU_OUT ?= gpu_check
# The GPU check runs in the active conda env (GPU users) when there is one, else in .venv.
ifdef CONDA_PREFIX
GPU_PY  ?= python
else
GPU_PY  ?= $(VPY)
endif
NVDIFFRAST_TAG ?= v0.4.0

.PHONY: setup demo app test test-all test-slow bench gpu-check gpu-extras gpu-bundle clean

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install --upgrade pip >/dev/null
	# torch first, pinned: on CPU machines this picks the CPU wheel (no CUDA download).
	$(VPY) -m pip install torch==2.13.0
	# app: the web app's extra (Gradio), so that make test runs its browser test too
	$(VPY) -m pip install -e '.[dev,app]'
	touch $@

setup: $(VENV)/.installed

# The training stage runs for a wall-clock budget: make demo DEMO_ARGS="--budget-minutes 5".
demo: setup
	$(VPY) -m pipelines.demo --data $(DATA) --out $(RUN) $(DEMO_ARGS)

# The local web app on a trained run (default: the demo's), its examples from $(DATA) when it exists.
# Prints its URL (http://127.0.0.1:7860); Ctrl-C stops it. make app CHECKPOINT=runs/x APP_ARGS="--port 8000"
app: setup
	$(VPY) -m pipelines.app --checkpoint $(CHECKPOINT) $(if $(wildcard $(DATA)),--data $(DATA)) $(APP_ARGS)

test: setup
	$(VPY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(TEST_ARGS)

test-slow: setup
	$(VPY) -m pytest -q -m slow $(TEST_ARGS)

bench: setup
	$(VPY) -m pipelines.bench

# CUDA machine: build, parity, CUDA tests, bench, 300-step training -> $(GPU_OUT)/gpu_check.{json,md}.
# Without CUDA: a dry run of the CPU parts. Exit status 1 when a check fails.
gpu-check: $(if $(filter $(VPY),$(GPU_PY)),setup)
	PYTHONPATH=. $(GPU_PY) -m pipelines.gpucheck --out $(GPU_OUT)

# After `conda env create -f environment.yml && conda activate recon`: nvdiffrast, compiled against
# the env's torch and nvcc (its setup imports torch, hence --no-build-isolation; CPATH/LIBRARY_PATH
# cover the conda CUDA layout that keeps headers and libraries under targets/).
gpu-extras:
	CPATH="$$CONDA_PREFIX/targets/x86_64-linux/include$${CPATH:+:$$CPATH}" \
	LIBRARY_PATH="$$CONDA_PREFIX/targets/x86_64-linux/lib$${LIBRARY_PATH:+:$$LIBRARY_PATH}" \
	  python -m pip install --no-build-isolation "git+https://github.com/NVlabs/nvdiffrast.git@$(NVDIFFRAST_TAG)"

# pytest for GPU machines without it: .gpu_vendor/, used by scripts/gpu_check.sh when carried along.
gpu-bundle: setup
	bash scripts/gpu_bundle.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
