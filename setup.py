"""Package list for setuptools; every other setting is in pyproject.toml.

The configurations live once, in the repository's top-level ``conf/``, and ship inside the wheel
as ``geossl/_conf/`` (found by ``geossl.conf.conf_dir``). That mapping is setuptools'
``package_dir``; pyproject.toml's declarative ``[tool.setuptools.packages.find]`` cannot add a
package mapped from another folder (it only lists folders it finds under ``geossl/``), so the
package list is computed here: every ``geossl`` package found as before, plus ``geossl._conf``
read from ``conf/`` (its YAML files: ``[tool.setuptools.package-data]``).
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[*find_namespace_packages(include=["geossl", "geossl.*"]), "geossl._conf"],
    package_dir={"geossl._conf": "conf"},
)
