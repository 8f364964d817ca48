"""Command-line pipelines: thin recipes over the recon library."""

# Before any pipeline imports torch: OpenMP reads its wait policy once, when torch loads it, and a
# waiting thread that spins instead of sleeping slows a run sharing its cores 10x (recon.runtime).
from recon.runtime import set_openmp_env

set_openmp_env()
