"""Command-line pipelines: thin recipes over the recon library."""
