"""Benchmarks of orket-pipeline: instrumentation cost and measurement accuracy."""
