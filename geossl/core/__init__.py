"""Contracts every stage shares.

Errors, progress, atomic writes and output folders, TorchGeo release differences,
configuration options, and the pairing contract (below both ``data`` and ``methods``).
"""
