"""Pretraining.

The fit loop (``trainer``), its configuration (``config``) and what to watch while it runs
(``monitor``).
"""
