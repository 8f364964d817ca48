"""Workflows: one call per command, chaining train, evaluate and report (``eval``, ``compare``,
``demo``, ``predict``, ``convert``). The pipelines parse flags into a config and call one of these."""
