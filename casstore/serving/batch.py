"""``casstore.models.predict``: score inputs with a model in this process, as MLflow's
``mlflow.models.predict`` does, and write the predictions as the server would answer.

The model is fetched and verified before it is unpickled. ``input_data`` goes to the
model as it is (``content_type="csv"`` turns it into CSV first, as MLflow does); a file
(``input_path``, or stdin) is read as ``/invocations`` reads a body, so a JSON file
takes ``dataframe_split``, ``dataframe_records``, ``instances`` or ``inputs`` and
``params``. casstore scores in the current Python environment: the options that build
another one (``env_manager`` other than ``"local"``, ``install_mlflow``,
``pip_requirements_override``, ``extra_envs``) are refused with a message.
"""

from __future__ import annotations

import sys
from typing import Any

from casstore._files import write_file
from casstore.exceptions import InvalidInputError, LocalFileError
from casstore.serving.payload import CSV, JSON, parse_request, predictions_body

__all__ = ["predict", "validate_serving_input", "write_predictions"]

_CONTENT_TYPES = {"json": JSON, "csv": CSV}


def predict(
    model_uri: str,
    input_data: Any = None,
    input_path: str | None = None,
    content_type: str = "json",
    output_path: str | None = None,
    env_manager: str | None = None,
    install_mlflow: bool = False,
    pip_requirements_override: list[str] | None = None,
    extra_envs: dict[str, str] | None = None,
) -> None:
    """Score ``input_data`` (or the file ``input_path``, else stdin) with the model at
    ``model_uri`` and write ``{"predictions": ...}`` to ``output_path`` (else stdout)."""
    from casstore.pyfunc import load_model

    if content_type not in _CONTENT_TYPES:
        raise InvalidInputError(f"content_type must be 'json' or 'csv', not {content_type!r}")
    if env_manager not in (None, "local"):
        raise InvalidInputError(
            f"env_manager={env_manager!r} is not supported: casstore.models.predict scores in the current Python "
            "environment; pass env_manager='local' (or leave it out) and install the model's requirements here")
    refused = [n for n, v in (("install_mlflow", install_mlflow), ("pip_requirements_override", pip_requirements_override),
                              ("extra_envs", extra_envs)) if v]
    if refused:
        raise InvalidInputError(f"{', '.join(refused)} apply to a new environment, which casstore.models.predict does "
                                "not build: leave them out and install the requirements in the current environment")
    if input_data is not None and input_path is not None:
        raise InvalidInputError("both input_data and input_path are given: pass only one of them")
    model = load_model(model_uri)
    params = None
    if input_data is not None and content_type == "json":
        data = input_data
    else:
        body = _csv(input_data) if input_data is not None else _read(input_path)
        parsed = parse_request(body, _CONTENT_TYPES[content_type], model.metadata.get_input_schema())
        data, params = parsed.data, parsed.params
    write_predictions(predictions_body(model.predict(data, params=params)), output_path)


def validate_serving_input(model_uri: str, serving_input: str | dict[str, Any]) -> Any:
    """Check that the model at ``model_uri`` can score ``serving_input`` (an ``/invocations``
    JSON body, as a string or a dict) as the scoring server would: the body is parsed and
    typed by the model's input schema, then scored here; return the model's predictions.
    A body the server would refuse raises the server's error (``BAD_REQUEST``)."""
    import json

    from casstore.pyfunc import load_model

    if isinstance(serving_input, dict):
        try:
            serving_input = json.dumps(serving_input)
        except (TypeError, ValueError) as e:
            raise InvalidInputError(f"serving_input is not JSON a request can carry: {e}") from e
    if not isinstance(serving_input, str):
        raise InvalidInputError(
            f"serving_input must be a JSON string or a dict (a request body), got {type(serving_input).__name__}")
    model = load_model(model_uri)
    parsed = parse_request(serving_input.encode("utf-8"), JSON, model.metadata.get_input_schema())
    return model.predict(parsed.data, params=parsed.params)


def write_predictions(body: bytes, output_path: str | None) -> None:
    """A predictions body, and a newline, to ``output_path`` (stdout if ``None``)."""
    if output_path is None:
        sys.stdout.write(body.decode("utf-8") + "\n")
        return
    write_file([body, b"\n"], output_path)  # whole, synced, or a LocalFileError naming it


def _csv(input_data: Any) -> bytes:
    if isinstance(input_data, str):
        return input_data.encode("utf-8")
    import pandas as pd

    try:
        return str(pd.DataFrame(input_data).to_csv(index=False)).encode("utf-8")
    except (ValueError, TypeError) as e:
        raise InvalidInputError(f"input_data cannot be written as CSV ({e}); pass a DataFrame, a dict or a list") from e


def _read(input_path: str | None) -> bytes:
    if input_path is None:
        return sys.stdin.buffer.read()
    try:
        with open(input_path, "rb") as f:
            return f.read()
    except OSError as e:
        raise LocalFileError(f"cannot read the input {input_path!r}: {e.strerror or e}") from e
