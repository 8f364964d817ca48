"""Command-line pipelines: thin recipes over the recon library."""

# Before any pipeline imports torch: OpenMP reads its wait policy once, when torch loads it, and
# threads that spin instead of sleeping slow a run sharing its cores (recon.runtime: a 2-thread run
# next to one busy process kept 36 % of its throughput spinning, 48 % sleeping).
from recon.runtime import set_openmp_env

set_openmp_env()
