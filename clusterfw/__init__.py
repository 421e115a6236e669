"""clusterfw: interchangeable galaxy-cluster finders, mass estimators and combiners.

Importing the package does no work: plugins are discovered only when
:func:`clusterfw.core.plugins.get_plugin_manager` is called.
"""

from importlib.metadata import PackageNotFoundError, version

from clusterfw.core.hookspecs import hookimpl

try:
    __version__ = version("clusterfw")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

__all__ = ["__version__", "hookimpl"]
