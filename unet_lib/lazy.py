"""Lazy package faces: public names imported from their submodules on first use.

``import unet_lib`` (and ``unet_lib.data``, ``unet_lib.training``, ``unet_lib.viz``) must stay
cheap: TensorFlow, Keras and Matplotlib load only when a name that needs them is used, so the
model, metrics and losses run on every Keras backend and ``--help`` answers at once.

Example:
    >>> __getattr__, __dir__ = lazy_face(__name__, {"pipeline": "make_dataset"})  # doctest: +SKIP
"""

import importlib
import sys


def lazy_face(package: str, exports: dict[str, str], submodules=()):
    """``(__getattr__, __dir__)`` for the package ``package`` (its ``__name__``; PEP 562).

    ``exports`` maps a submodule (relative to the package) to its public names, space-separated;
    ``submodules`` are attributes of the package themselves. A looked-up name is stored in the
    package, so later look-ups skip ``__getattr__``.
    """
    where = {name: module for module, names in exports.items() for name in names.split()}
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str):
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(f"{package}.{where[name]}")
        namespace[name] = value = getattr(module, name)
        return value

    def __dir__():
        return sorted(set(namespace) | set(where) | set(submodules))

    __getattr__.names = tuple(where)
    return __getattr__, __dir__
