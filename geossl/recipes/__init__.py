"""Recipes built from the library's calls, like ``demo`` and ``bench``.

Grids of pretraining runs (``sweep``).
"""
