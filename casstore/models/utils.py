"""MLflow's ``mlflow.models.utils`` helpers for input examples and their serving form.

>>> import pandas as pd
>>> print(convert_input_example_to_serving_input(pd.DataFrame({"a": [1.0]})))
{
  "dataframe_split": {
    "columns": [
      "a"
    ],
    "data": [
      [
        1.0
      ]
    ]
  }
}
"""

from __future__ import annotations

import os
from typing import Any

from casstore.exceptions import LocalFileError, ObjectNotFoundError
from casstore.models import mlmodel

__all__ = ["convert_input_example_to_serving_input", "load_serving_example"]


def convert_input_example_to_serving_input(input_example: Any) -> str | None:
    """The scoring server's request body (JSON text) for an input example: a DataFrame as
    ``dataframe_split``, an array, a list or a dict as ``inputs``; ``None`` for ``None``.
    ``mlflow.models.validate_serving_input`` takes it."""
    if input_example is None:
        return None
    return mlmodel.serving_input_json(input_example)


def load_serving_example(model_uri_or_path: str | os.PathLike[str]) -> str:
    """The serving input example a model was saved with (``serving_input_example.json``), as
    text; from a model URI (verified) or a model directory."""
    from casstore.models.local import is_model_uri, local_model_dir
    from casstore.models.save import model_file

    source = os.fspath(model_uri_or_path)
    name = mlmodel.SERVING_INPUT_EXAMPLE
    if is_model_uri(source):
        data = model_file(source, name, None)[2]
        if data is None:
            raise ObjectNotFoundError(f"model {source!r} has no serving input example ({name}): it was logged "
                                      "without input_example")
        return data.decode("utf-8")
    path = os.path.join(local_model_dir(source), name)
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError as e:
        raise ObjectNotFoundError(f"model directory {source!r} has no serving input example ({name}): it was saved "
                                  "without input_example") from e
    except OSError as e:
        raise LocalFileError(f"cannot read {path!r}: {e.strerror}") from e
