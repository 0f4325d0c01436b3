"""Models: signatures, model entries, URIs, verified fetching and the pyfunc interface.

Flavors live beside this package (``casstore.sklearn``); ``casstore.pyfunc`` loads any
of them. See ``entry.py`` for what a logged model is on the store. The names below are
loaded on first use, so ``casstore.models.entry`` alone does not load saving or pandas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from casstore._lazy import lazy_getattr

if TYPE_CHECKING:
    from casstore.models.entry import ModelEntry, entry_digest
    from casstore.models.evaluation import EvaluationResult, evaluate
    from casstore.models.model import Model
    from casstore.models.python_model import set_model
    from casstore.models.save import ModelInfo, get_model_info
    from casstore.models.signature import (
        ColSpec,
        DataType,
        ModelSignature,
        ParamSchema,
        ParamSpec,
        Schema,
        TensorSpec,
        infer_signature,
    )
    from casstore.models.uri import ModelURI, parse_model_uri
    from casstore.models.utils import convert_input_example_to_serving_input
    from casstore.serving.batch import predict, validate_serving_input

__all__ = [
    "infer_signature",
    "ModelSignature",
    "Schema",
    "ColSpec",
    "TensorSpec",
    "ParamSchema",
    "ParamSpec",
    "DataType",
    "ModelInfo",
    "get_model_info",
    "Model",
    "ModelEntry",
    "entry_digest",
    "ModelURI",
    "parse_model_uri",
    "evaluate",
    "EvaluationResult",
    "predict",
    "validate_serving_input",
    "convert_input_example_to_serving_input",
    "set_model",
]

if not TYPE_CHECKING:
    __getattr__ = lazy_getattr(globals(), {
        **dict.fromkeys(("ModelEntry", "entry_digest"), "casstore.models.entry"),
        **dict.fromkeys(("ModelInfo", "get_model_info"), "casstore.models.save"),
        "Model": "casstore.models.model",
        **dict.fromkeys(("evaluate", "EvaluationResult"), "casstore.models.evaluation"),
        **dict.fromkeys(("ColSpec", "DataType", "ModelSignature", "ParamSchema", "ParamSpec", "Schema", "TensorSpec",
                         "infer_signature"),
                        "casstore.models.signature"),
        **dict.fromkeys(("ModelURI", "parse_model_uri"), "casstore.models.uri"),
        **dict.fromkeys(("predict", "validate_serving_input"), "casstore.serving.batch"),
        "set_model": "casstore.models.python_model",
        "convert_input_example_to_serving_input": "casstore.models.utils",
    })
