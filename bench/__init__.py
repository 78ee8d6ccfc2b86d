"""Benchmarks: not part of the test suite; their figures are recorded in docs/performance.md."""
