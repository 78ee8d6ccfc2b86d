"""Simulated devices: stateful HTTP fakes that behave like the vendor manuals say.

Tests, benchmarks and the demo run them on loopback. Each has a control API under ``/_sim/``
(and the same operations as methods, for in-process use) to inject events and faults.
"""
