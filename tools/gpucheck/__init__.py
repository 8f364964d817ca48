"""The one-call GPU check behind ``python -m pipelines.gpucheck`` (``make gpu-check``).

GPU machines are lent now and then, for minutes, with no network: this runs everything that needs
one in a single command sized to finish in about 7 minutes on one H100/H200, and writes
``gpu_check.json`` and ``gpu_check.md`` to the output directory after every section (a run cut
short still leaves what it measured). Sections, in order:

1. ``environment``: device, driver, torch / CUDA / cuDNN / nvcc versions.
2. ``build``: JIT build (or cache load) of the CUDA kernel, timed.
3. ``parity``: the CUDA kernel (atomic and deterministic backward) and the C++ kernel against the
   torch reference, CUDA against C++, float32 and float64, forward values and gradients, at the
   tolerances of the CPU tests (``softras_ext.PARITY_*``); the deterministic backward run twice
   must agree bit for bit. Meshes up to 20480 faces at 256 px.
4. ``cuda_tests``: every ``@pytest.mark.cuda`` test, in a pytest subprocess.
5. ``bench``: torch reference on CUDA vs our kernel (both backward modes) at batch 1/16/64/256 and
   64/128 px, a 20480-face mesh at 128/256 px, kaolin / nvdiffrast rows when importable, their
   silhouettes against softras' (mean |difference|), and the training-step split.
6. ``train``: 300 steps on a small synthetic dataset and its evaluation, on CUDA.

Without CUDA (or with ``dry_run``) the CPU parts run instead, small: the C++ kernel's parity, a few
CPU bench rows and a 4-step training; the GPU parts are reported as skipped. The check fails
(``report["ok"]`` False, exit status 1) on any parity failure, failed CUDA test or section error.

Importing this package (and running it) needs only torch, numpy, h5py, rich, pillow and matplotlib:
no trimesh, kaolin, nvdiffrast or pytest (the CUDA tests are skipped, and said so, without pytest).

One module per job: ``plans`` (the settings and the GPU / dry-run plans), ``meshes`` (test meshes),
``environment`` (versions, kernel build), ``parity``, ``cuda_testrun`` (the CUDA-marked tests),
``bench``, ``train`` (training + evaluation), ``report`` (JSON / Markdown) and ``run`` (the driver).
"""

from tools.gpucheck.parity import PARITY_CASES
from tools.gpucheck.plans import DRY_PLAN, GPU_PLAN, GpuCheckConfig, Plan
from tools.gpucheck.report import REPORT_JSON, REPORT_MD, markdown_report
from tools.gpucheck.run import run_gpu_check

__all__ = ["GpuCheckConfig", "Plan", "GPU_PLAN", "DRY_PLAN", "PARITY_CASES", "run_gpu_check", "markdown_report",
           "REPORT_JSON", "REPORT_MD"]
