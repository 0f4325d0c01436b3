"""Serialization formats for Python model objects: cloudpickle, pickle, skops.

``skops`` refuses to build any type it does not trust; the trusted types are asked
for at *load* time (``skops_trusted_types``), never read from the model's own files,
so a crafted model cannot trust itself.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from typing import IO, Any

from casstore.exceptions import InvalidInputError

__all__ = ["FORMATS", "DEFAULT_FORMAT", "model_file_name", "check_format", "dump_model", "load_model_file", "skops_untrusted_types"]

CLOUDPICKLE = "cloudpickle"
PICKLE = "pickle"
SKOPS = "skops"
FORMATS = (CLOUDPICKLE, PICKLE, SKOPS)
DEFAULT_FORMAT = CLOUDPICKLE


def check_format(fmt: object) -> str:
    if fmt not in FORMATS:
        raise InvalidInputError(f"unknown serialization_format {fmt!r}; use one of {', '.join(map(repr, FORMATS))}")
    return str(fmt)


def model_file_name(fmt: str) -> str:
    """The model data file's name in the model directory (as MLflow names it)."""
    return "model.skops" if fmt == SKOPS else "model.pkl"


def _skops() -> Any:
    try:
        import skops.io
    except ImportError as e:
        raise InvalidInputError(
            "serialization_format='skops' needs the skops package: pip install 'casstore[sklearn]'"
        ) from e
    return skops.io


def dump_model(model: Any, path: str | os.PathLike[str], fmt: str) -> None:
    """Write ``model`` to ``path`` in format ``fmt``."""
    fmt = check_format(fmt)
    if fmt == SKOPS:
        _skops().dump(model, os.fspath(path))
        return
    with open(path, "wb") as f:
        if fmt == CLOUDPICKLE:
            import cloudpickle

            cloudpickle.dump(model, f)
        else:
            pickle.dump(model, f)


def _check_trusted(trusted: object) -> list[str]:
    if trusted is None:
        return []
    if isinstance(trusted, str) or not isinstance(trusted, Sequence) or not all(isinstance(t, str) for t in trusted):
        raise InvalidInputError(
            f"skops_trusted_types must be a list of type names such as ['sklearn.tree._tree.Tree'], got {trusted!r}"
        )
    return list(trusted)


def skops_untrusted_types(path: str | os.PathLike[str]) -> list[str]:
    """The types in a skops file that skops does not trust by default."""
    return sorted(_skops().get_untrusted_types(file=os.fspath(path)))


def load_model_file(f: IO[bytes], fmt: str, skops_trusted_types: Sequence[str] | None = None) -> Any:
    """Deserialize a model from the binary file object ``f``. Callers verify every byte
    of the file first."""
    fmt = check_format(fmt)
    if fmt == SKOPS:
        skops = _skops()
        trusted = _check_trusted(skops_trusted_types)
        data = f.read()
        untrusted = [t for t in sorted(skops.get_untrusted_types(data=data)) if t not in trusted]
        if untrusted:
            raise InvalidInputError(
                f"this skops model holds types that are not trusted: {untrusted}. skops builds only the "
                "types you trust; if you trust this model's source, load it with "
                f"skops_trusted_types={untrusted!r}"
            )
        return skops.loads(data, trusted=trusted or None)
    if fmt == CLOUDPICKLE:
        import cloudpickle

        return cloudpickle.load(f)
    return pickle.load(f)
