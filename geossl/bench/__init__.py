"""Benchmarks (not tests): ``geossl bench train`` and friends.

Each benchmark measures geossl next to the named baseline it must beat, in one run on the same
input, and prints a table with the ratios.
"""
