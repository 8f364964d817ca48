"""Developer tooling beside the package (not in the wheel): the benchmarks behind
``python -m pipelines.bench`` (``tools.bench``) and the GPU check behind ``make gpu-check``
(``tools.gpucheck``), with the meshes they share (``tools.meshes``)."""
