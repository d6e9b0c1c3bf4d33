"""Build hook of sigfuse: the optional native link codec.  Everything else is in pyproject.toml.

``sigfuse._linkcodec`` is the C codec of ``firmware/src/`` compiled by cffi (API mode, see
``host/_native_build.py``).  It is optional: without a working C compiler (or with ``CC=false``)
the build says so and goes on, and :mod:`sigfuse.codec` uses the pure-Python codec.  Both
``pip install .`` and ``pip install -e .`` run this.
"""

import importlib.util
import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))


class OptionalBuildExt(build_ext):
    """build_ext that never fails the install: a missing compiler means the Python codec."""

    def run(self):
        try:
            super().run()
        except Exception as error:  # noqa: BLE001 - any compiler failure: go on without it
            self._skip(error)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as error:  # noqa: BLE001
            self._skip(error)

    @staticmethod
    def _skip(error):
        sys.stderr.write(f"sigfuse: native link codec not built ({error}); "
                         "the pure-Python codec will be used\n")


def _extensions():
    try:
        # Loaded by path: putting host/ on sys.path would shadow the standard library
        # (host/queue.py) for the rest of the build.
        spec = importlib.util.spec_from_file_location(
            "_sigfuse_native_build", os.path.join(HERE, "host", "_native_build.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return [module.make_ffibuilder().distutils_extension(tmpdir=os.path.join("build", "cffi"))]
    except Exception as error:  # noqa: BLE001 - cffi missing or broken: no extension
        OptionalBuildExt._skip(error)
        return []


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
