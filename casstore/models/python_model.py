"""Custom Python models: MLflow's ``PythonModel`` and ``PythonModelContext``.

Subclass :class:`PythonModel`, give it a ``predict`` (and, if it needs files, a
``load_context`` reading ``context.artifacts``), and log it with
``casstore.pyfunc.log_model(name=..., python_model=..., artifacts={...})``. The instance
is stored with cloudpickle like any model file: pinned by the model digest and verified
before it is unpickled. A plain function ``predict(model_input)`` works as a model too.

A model from code (MLflow 3's recommended form) is a Python file that defines the model
and calls :func:`set_model` with it; ``log_model(python_model="model.py")`` stores the
file itself, not a pickle, and loading runs it (after verifying it) to get the model.

>>> class AddN(PythonModel):
...     def __init__(self, n):
...         self.n = n
...     def predict(self, context, model_input, params=None):
...         return [x + self.n for x in model_input]
>>> PythonModelPredictor(AddN(2), PythonModelContext({}, None)).predict([1, 2])
[3, 4]
"""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import Callable
from typing import Any

from casstore.exceptions import InvalidInputError

__all__ = ["PythonModel", "PythonModelContext", "PythonModelPredictor", "FunctionModel", "model_from_code", "set_model"]


class PythonModel:
    """A model defined by its ``predict`` method (MLflow's ``mlflow.pyfunc.PythonModel``).

    ``predict(self, context, model_input, params=None)``; since MLflow 2.20 ``context`` may
    be left out: ``predict(self, model_input, params=None)``."""

    def load_context(self, context: PythonModelContext) -> None:
        """Called once when the model is loaded, with the model's artifacts as local files."""

    def predict(self, context: PythonModelContext, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define predict(self, context, model_input, params=None)")


class PythonModelContext:
    """What a loaded :class:`PythonModel` is given: ``artifacts`` maps each name given to
    ``log_model(artifacts=...)`` to the absolute local path of its verified copy."""

    def __init__(self, artifacts: dict[str, str], model_config: dict[str, Any] | None = None) -> None:
        self._artifacts = dict(artifacts)
        self._model_config = dict(model_config) if model_config else {}

    @property
    def artifacts(self) -> dict[str, str]:
        return self._artifacts

    @property
    def model_config(self) -> dict[str, Any]:
        return self._model_config


class FunctionModel(PythonModel):
    """A plain function used as a model: ``predict`` calls it with the input."""

    def __init__(self, func: Callable[[Any], Any]) -> None:
        self.func = func

    def predict(self, context: PythonModelContext, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        return self.func(model_input)


def _takes(method: Callable[..., Any], name: str) -> bool:
    try:
        return name in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


class PythonModelPredictor:
    """A loaded python model and its context, called as ``predict(model_input, params)``."""

    takes_params = True

    def __init__(self, python_model: Any, context: PythonModelContext) -> None:
        self.python_model = python_model
        self.context = context
        predict = getattr(python_model, "predict", None)
        if not callable(predict):
            raise TypeError(f"{type(python_model).__name__} has no predict method")
        self._with_context = _takes(predict, "context")
        self._with_params = _takes(predict, "params")

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        args: list[Any] = [self.context] if self._with_context else []
        kwargs = {"params": params} if self._with_params else {}
        return self.python_model.predict(*args, model_input, **kwargs)


_code_model = threading.local()


def set_model(model: Any) -> None:
    """Name the model a model-from-code file defines (MLflow's ``mlflow.models.set_model``):
    a :class:`PythonModel` instance or a function."""
    _code_model.value = model


def model_from_code(path: str | os.PathLike[str]) -> PythonModel:
    """Run the Python file ``path`` and return the model it passed to :func:`set_model`."""
    import runpy

    path = os.fspath(path)
    _code_model.value = None
    try:
        runpy.run_path(path)
        model = _code_model.value
    finally:
        _code_model.value = None
    if model is None:
        raise InvalidInputError(f"the model code {path!r} did not call set_model(model): end it with "
                                "casstore.models.set_model(<your PythonModel instance or function>)")
    if isinstance(model, PythonModel) or callable(getattr(model, "predict", None)):
        return model  # type: ignore[no-any-return]
    if callable(model):
        return FunctionModel(model)
    raise InvalidInputError(f"the model code {path!r} set a {type(model).__name__}: set_model takes a PythonModel or a function")
