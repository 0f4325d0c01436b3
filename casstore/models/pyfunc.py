"""The generic ``python_function`` interface: any flavor's model behind one ``predict``.

:func:`load_pyfunc` fetches a model with every byte verified (see ``fetch.py``), asks
the flavor named by the entry's ``python_function.loader_module`` to build the
predictor, and wraps it in a :class:`PyFuncModel` that enforces the signature.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from casstore.exceptions import CorruptRecordError, InvalidInputError
from casstore.models.enforce import enforce_schema
from casstore.models.entry import ModelEntry
from casstore.models.signature import ModelSignature, ParamSchema, Schema, enforce_params

if TYPE_CHECKING:
    from casstore.models.fetch import FetchedModel

__all__ = ["PyFuncModel", "ModelMetadata", "FLAVOR_NAME", "pyfunc_from_fetched"]

FLAVOR_NAME = "python_function"
#: flavors whose loader may be imported by name from a model entry
_LOADER_PREFIX = "casstore."


class ModelMetadata:
    """What a loaded model says about itself (MLflow's ``PyFuncModel.metadata``)."""

    def __init__(self, entry: ModelEntry, model_digest: str, model_uri: str | None) -> None:
        self.entry = entry
        self.model_digest = model_digest
        self.model_uri = model_uri
        self.flavors = entry.flavors
        self.run_id = entry.run_id
        self.artifact_path = entry.name
        self.utc_time_created = entry.created
        self.metadata = entry.metadata
        self.requirements = list(entry.requirements)
        self.signature = ModelSignature.from_dict(entry.signature) if entry.signature else None
        self.saved_input_example_info = entry.input_example

    def get_input_schema(self) -> Schema | None:
        return self.signature.inputs if self.signature else None

    def get_output_schema(self) -> Schema | None:
        return self.signature.outputs if self.signature else None

    def get_params_schema(self) -> ParamSchema | None:
        return self.signature.params if self.signature else None

    def __repr__(self) -> str:
        return f"<ModelMetadata {self.artifact_path!r} digest={self.model_digest[:12]}… flavors={sorted(self.flavors)}>"


class PyFuncModel:
    """A loaded model with a ``predict`` that checks its input against the signature."""

    def __init__(self, impl: Any, metadata: ModelMetadata, predict_fn: str = "predict") -> None:
        self._impl = impl
        self.metadata = metadata
        self._predict_fn = predict_fn
        if not callable(getattr(impl, predict_fn, None)):
            raise InvalidInputError(f"the loaded model has no {predict_fn}() method, so it cannot be used as a pyfunc model")

    @property
    def model_digest(self) -> str:
        return self.metadata.model_digest

    @property
    def loader_module(self) -> str | None:
        """The module that loads the model: casstore's (``casstore.sklearn``,
        ``casstore.pyfunc``), where MLflow names its own (``mlflow.sklearn``)."""
        flavor = self.metadata.flavors.get("python_function")
        return flavor.get("loader_module") if isinstance(flavor, dict) else None

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        """Check ``data`` against the input schema (converting only where no value can
        change), then call the model. A mismatch is an :class:`InvalidInputError`."""
        takes_params = getattr(self._impl, "takes_params", False) is True
        signature = self.metadata.signature
        params = enforce_params(params, signature.params if signature is not None else None)
        if params and not takes_params:
            raise InvalidInputError(
                "this model takes no inference params: only a python_model's predict is given params"
            )
        schema = self.metadata.get_input_schema()
        if schema is not None:
            data = enforce_schema(data, schema)
        if takes_params:
            return getattr(self._impl, self._predict_fn)(data, params)
        return getattr(self._impl, self._predict_fn)(data)

    def get_raw_model(self) -> Any:
        """The underlying model object (for sklearn: the estimator; for a custom model, the
        ``PythonModel`` instance)."""
        return getattr(self._impl, "python_model", self._impl)

    def unwrap_python_model(self) -> Any:
        """The ``PythonModel`` instance of a custom model (MLflow's name)."""
        inner = getattr(self._impl, "python_model", None)
        if inner is None:
            raise InvalidInputError("this model is not a custom python model; use get_raw_model()")
        return inner

    def __repr__(self) -> str:
        return (
            f"casstore.pyfunc.loaded_model:\n  artifact_path: {self.metadata.artifact_path}\n"
            f"  flavor: {self.metadata.flavors.get(FLAVOR_NAME, {}).get('loader_module')}\n"
            f"  run_id: {self.metadata.run_id}\n  model_digest: {self.metadata.model_digest}\n"
        )


def pyfunc_from_fetched(fetched: FetchedModel, model_uri: str | None = None, **loader_kwargs: Any) -> PyFuncModel:
    """Build the pyfunc model from files already fetched and verified."""
    entry = fetched.entry
    conf = entry.flavors.get(FLAVOR_NAME)
    if conf is None:
        raise InvalidInputError(
            f"model {entry.name!r} has no python_function flavor (it has {sorted(entry.flavors)}); "
            "load it with its own flavor's load_model"
        )
    loader = conf.get("loader_module")
    if not isinstance(loader, str) or not loader.startswith(_LOADER_PREFIX):
        raise CorruptRecordError(
            f"model {entry.name!r} names loader module {loader!r}; casstore loads only its own flavors (casstore.*)"
        )
    try:
        module = importlib.import_module(loader)
    except ImportError as e:
        raise InvalidInputError(f"cannot import the loader {loader!r} of model {entry.name!r}: {e}") from e
    impl = module._load_pyfunc_from_fetched(fetched, **loader_kwargs)
    predict_fn = conf.get("predict_fn") or "predict"
    return PyFuncModel(impl, ModelMetadata(entry, fetched.model_digest, model_uri), str(predict_fn))
