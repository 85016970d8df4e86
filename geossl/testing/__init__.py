"""Fake data in the real on-disk layouts, for tests and benchmarks."""
