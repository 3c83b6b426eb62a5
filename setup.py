"""Builds the optional C loops of the record checks (protocol/_speedups.c);
the rest of the packaging is in pyproject.toml.

The extension is optional: without a compiler or Python's headers the
build goes on without it (setuptools reports the failure) and
the Python versions in protocol/ serve in its place, with the same results.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("pybroker.protocol._speedups", ["protocol/_speedups.c"], optional=True)])
