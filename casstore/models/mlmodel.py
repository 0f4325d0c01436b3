"""MLflow-compatible files of a model directory: ``MLmodel``, ``requirements.txt``,
``python_env.yaml``, ``conda.yaml`` and the input example.

They make a downloaded model directory readable by MLflow's own tools
(``mlflow.sklearn.load_model(dir)``, ``mlflow.pyfunc.load_model(dir)``). casstore
itself loads from the model entry, not from these files.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import platform
from typing import Any

import yaml

from casstore.exceptions import InvalidInputError
from casstore.models.signature import optional_pandas

__all__ = [
    "MLMODEL",
    "REQUIREMENTS",
    "PYTHON_ENV",
    "CONDA",
    "INPUT_EXAMPLE",
    "write_mlmodel",
    "write_env_files",
    "input_example_data",
    "save_input_example",
    "python_version",
]

MLMODEL = "MLmodel"
REQUIREMENTS = "requirements.txt"
PYTHON_ENV = "python_env.yaml"
CONDA = "conda.yaml"
INPUT_EXAMPLE = "input_example.json"
SERVING_INPUT_EXAMPLE = "serving_input_example.json"


def python_version() -> str:
    return platform.python_version()


def _dump_yaml(obj: Any, path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(obj, f, default_flow_style=False, sort_keys=True)


def write_mlmodel(model_dir: str, fields: dict[str, Any]) -> str:
    """Write ``MLmodel`` (YAML) with the given top-level fields; return its path."""
    path = os.path.join(model_dir, MLMODEL)
    _dump_yaml(fields, path)
    return path


def _pinned(dist: str) -> str:
    try:
        return f"{dist}=={md.version(dist)}"
    except md.PackageNotFoundError:
        return dist


def write_env_files(model_dir: str, requirements: list[str]) -> dict[str, str]:
    """Write ``requirements.txt``, ``python_env.yaml`` and ``conda.yaml``; return MLflow's
    ``env`` block for the ``python_function`` flavor."""
    with open(os.path.join(model_dir, REQUIREMENTS), "w", encoding="utf-8") as f:
        f.write("".join(r + "\n" for r in requirements))
    pyver = python_version()
    _dump_yaml(
        {
            "python": pyver,
            "build_dependencies": [_pinned("pip"), _pinned("setuptools"), _pinned("wheel")],
            "dependencies": [f"-r {REQUIREMENTS}"],
        },
        os.path.join(model_dir, PYTHON_ENV),
    )
    _dump_yaml(
        {
            "name": "model-env",
            "channels": ["conda-forge"],
            "dependencies": [f"python={pyver}", "pip", {"pip": list(requirements)}],
        },
        os.path.join(model_dir, CONDA),
    )
    return {"conda": CONDA, "virtualenv": PYTHON_ENV}


def _jsonable(x: Any) -> Any:
    import numpy as np

    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.generic,)):
        return x.item()
    return str(x)


def input_example_data(example: Any) -> Any:
    """The input example as it is saved and as a signature is inferred from: a dict of
    columns or a Series becomes a DataFrame; anything else is kept as given (so a numpy
    example keeps its dtype, which its JSON form does not record)."""
    import numpy as np

    pd = optional_pandas()
    if isinstance(example, dict) and not all(isinstance(v, np.ndarray) for v in example.values()) and pd is not None:
        return pd.DataFrame({k: v if isinstance(v, (list, tuple, np.ndarray)) else [v] for k, v in example.items()})
    if pd is not None and isinstance(example, pd.Series):
        return example.to_frame()
    return example


def save_input_example(model_dir: str, example: Any) -> dict[str, Any]:
    """Write the input example as MLflow does; return MLflow's ``saved_input_example_info``."""
    import numpy as np

    pd = optional_pandas()
    info: dict[str, Any] = {"artifact_path": INPUT_EXAMPLE, "serving_input_path": SERVING_INPUT_EXAMPLE}
    example = input_example_data(example)
    if pd is not None and isinstance(example, pd.DataFrame):
        split = json.loads(example.to_json(orient="split", index=False, date_format="iso"))
        body: Any = {"columns": split["columns"], "data": split["data"]}
        serving: Any = {"dataframe_split": body}
        info.update(type="dataframe", pandas_orient="split")
    elif isinstance(example, dict):
        body = {k: v.tolist() for k, v in example.items()}
        serving = {"inputs": body}
        info["type"] = "json_object"
    elif isinstance(example, (list, tuple, np.ndarray)):
        body = np.asarray(example).tolist()
        serving = {"inputs": body}
        info["type"] = "ndarray"
    else:
        raise InvalidInputError(
            f"cannot save an input example of type {type(example).__name__}; "
            "give a numpy array, a pandas DataFrame, a list or a dict"
        )
    try:
        with open(os.path.join(model_dir, INPUT_EXAMPLE), "w", encoding="utf-8") as f:
            json.dump(body, f, default=_jsonable)
        with open(os.path.join(model_dir, SERVING_INPUT_EXAMPLE), "w", encoding="utf-8") as f:
            json.dump(serving, f, default=_jsonable, indent=2)
    except (TypeError, ValueError) as e:
        raise InvalidInputError(f"the input example cannot be written as JSON: {e}") from e
    return info
