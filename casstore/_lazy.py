"""Public names loaded on first use (PEP 562), so importing a package costs only what is used."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_getattr"]


def lazy_getattr(namespace: dict[str, Any], homes: Mapping[str, str], default: str | None = None) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports each name of ``homes`` from the module it maps to
    the first time it is asked for, and keeps it in ``namespace`` (the module's globals).
    A name mapped to the package's submodule of that name is that submodule; a public name
    not in ``homes`` (nor a submodule's) is looked up in the module ``default``, if given:

        __getattr__ = lazy_getattr(globals(), {"Client": "pkg.client", "data": "pkg.data"})
    """
    package = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None and default is not None and not name.startswith("_") and not _is_submodule(package, name):
            home = default
        module = None if home is None else importlib.import_module(home)
        if module is None or not (home == f"{package}.{name}" or hasattr(module, name)):
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = module if home == f"{package}.{name}" else getattr(module, name)
        namespace[name] = value
        return value

    return __getattr__


def _is_submodule(package: str, name: str) -> bool:
    """Whether ``package.name`` is a module, which ``from package import name`` imports
    once ``__getattr__`` says the package has no such attribute yet."""
    return importlib.util.find_spec(f"{package}.{name}") is not None
