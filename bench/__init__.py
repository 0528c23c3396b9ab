"""Benchmarks and the drift-quality study: ``python -m bench [--quick] [NAME ...]`` (see docs/benchmarks.md)."""
