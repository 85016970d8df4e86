"""One module per ``geossl`` subcommand.

Each module defines ``NAME`` (the subcommand), ``HELP`` (one line), ``add_arguments(parser)`` and
``run(cfg) -> int | None``. Heavy imports happen inside ``run`` so that ``--help`` stays fast.
Flags shared by several commands come from :mod:`geossl.commands._common` so that they are spelt
the same everywhere.
"""
