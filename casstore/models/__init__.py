"""Models: signatures, model entries, URIs, verified fetching and the pyfunc interface.

Flavors live beside this package (``casstore.sklearn``); ``casstore.pyfunc`` loads any
of them. See ``entry.py`` for what a logged model is on the store.
"""

from __future__ import annotations

from casstore.models.entry import ModelEntry, entry_digest
from casstore.models.save import ModelInfo
from casstore.models.signature import ColSpec, DataType, ModelSignature, Schema, TensorSpec, infer_signature
from casstore.models.uri import ModelURI, parse_model_uri

__all__ = [
    "infer_signature",
    "ModelSignature",
    "Schema",
    "ColSpec",
    "TensorSpec",
    "DataType",
    "ModelInfo",
    "ModelEntry",
    "entry_digest",
    "ModelURI",
    "parse_model_uri",
]
