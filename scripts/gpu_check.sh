#!/usr/bin/env bash
# The GPU check as one prepared command for a lent GPU machine: no install, no network; the
# project runs from this checkout through PYTHONPATH.
#
#   bash scripts/gpu_check.sh [pipelines.gpucheck flags]
#
# Reports go to $OUT/gpu_check when $OUT is set (the device tool's output folder), else ./gpu_check.
# pytest is not part of a bare GPU image: when .gpu_vendor/ exists (`make gpu-bundle` fills it from
# .venv) it is put on PYTHONPATH so the CUDA-marked tests run too; without it they are reported as
# skipped. Exit status: that of pipelines.gpucheck (0 passed, 1 a check failed, 2 bad flags).
set -u
cd "$(dirname "$0")/.."
out="${OUT:-.}/gpu_check"
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -d .gpu_vendor ]; then PYTHONPATH="$PYTHONPATH:$PWD/.gpu_vendor"; fi
export PYTHONPATH
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"  # parallel ninja jobs for the kernel builds
python="$(command -v python || command -v python3)"
exec "$python" -m pipelines.gpucheck --out "$out" "$@"
