"""Where work runs.

Dask for data jobs (``dask``), the compute device (``devices``), the machine's cores
(``machine``), single-thread sections (``threads``).
"""
