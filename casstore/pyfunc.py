"""``casstore.pyfunc``: load any logged model behind one ``predict`` that enforces its signature.

>>> model = casstore.pyfunc.load_model("models:/production-classifier/1")   # doctest: +SKIP
>>> model.predict(X)                                                        # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from casstore.models import _context
from casstore.models.fetch import fetch_model_uri
from casstore.models.pyfunc import FLAVOR_NAME, ModelMetadata, PyFuncModel, pyfunc_from_fetched

if TYPE_CHECKING:
    from casstore.runs import RunStore

__all__ = ["FLAVOR_NAME", "PyFuncModel", "ModelMetadata", "load_model"]


def load_model(
    model_uri: str,
    suppress_warnings: bool = False,
    dst_path: str | os.PathLike[str] | None = None,
    *,
    skops_trusted_types: Sequence[str] | None = None,
    store: RunStore | None = None,
) -> PyFuncModel:
    """Load a model as a :class:`PyFuncModel` from ``runs:/``, ``models:/`` or ``cas:`` URIs.

    Every file is verified against the model entry (and the entry against a registry
    version's pin) before anything is deserialized. ``skops_trusted_types`` names the
    types a skops model may build beyond those skops trusts by default.
    """
    store = store or _context.current_store()
    fetched = fetch_model_uri(model_uri, store, dest=os.fspath(dst_path) if dst_path is not None else None)
    try:
        kwargs = {"skops_trusted_types": skops_trusted_types} if skops_trusted_types is not None else {}
        return pyfunc_from_fetched(fetched, model_uri, **kwargs)
    finally:
        if dst_path is None:
            fetched.cleanup()
