"""A trained encoder used outside training.

Exported weights (``export``) and embedding maps of scenes (``embed``).
"""
