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
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import yaml

from casstore.exceptions import CorruptRecordError, InvalidInputError, LocalFileError
from casstore.models.signature import NUMPY_DTYPES, optional_pandas

if TYPE_CHECKING:
    from casstore.models.entry import FileRef, ModelEntry

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
    "parse_input_example",
    "parse_example_params",
    "split_example_params",
    "serving_input_json",
    "python_version",
    "entry_from_mlmodel",
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


def split_example_params(example: Any) -> tuple[Any, dict[str, Any] | None]:
    """An input example and its inference params: MLflow's ``(data, {"param": value})`` form
    gives both, anything else is data alone."""
    if isinstance(example, tuple) and len(example) == 2 and isinstance(example[1], dict):
        return example[0], example[1]
    return example, None


def input_example_data(example: Any) -> Any:
    """The input example as it is saved and as a signature is inferred from: a dict of
    columns or a Series becomes a DataFrame; anything else is kept as given (so a numpy
    example keeps its dtype, which its JSON form does not record). Params given with it
    (``(data, params)``) are left out."""
    import numpy as np

    example = split_example_params(example)[0]
    pd = optional_pandas()
    if isinstance(example, dict) and not all(isinstance(v, np.ndarray) for v in example.values()) and pd is not None:
        return pd.DataFrame({k: v if isinstance(v, (list, tuple, np.ndarray)) else [v] for k, v in example.items()})
    if pd is not None and isinstance(example, pd.Series):
        return example.to_frame()
    return example


def save_input_example(model_dir: str, example: Any) -> dict[str, Any]:
    """Write the input example as MLflow does; return MLflow's ``saved_input_example_info``."""
    body, serving, info = _example_forms(example)
    try:
        with open(os.path.join(model_dir, INPUT_EXAMPLE), "w", encoding="utf-8") as f:
            json.dump(body, f, default=_jsonable)
        with open(os.path.join(model_dir, SERVING_INPUT_EXAMPLE), "w", encoding="utf-8") as f:
            f.write(_serving_json(serving))
    except (TypeError, ValueError) as e:
        raise InvalidInputError(f"the input example cannot be written as JSON: {e}") from e
    return info


def serving_input_json(example: Any) -> str:
    """The scoring server's request body for an input example, as MLflow's
    ``convert_input_example_to_serving_input`` gives it (what ``serving_input_example.json`` holds)."""
    try:
        return _serving_json(_example_forms(example)[1])
    except (TypeError, ValueError) as e:
        raise InvalidInputError(f"the input example cannot be written as JSON: {e}") from e


def _serving_json(serving: Any) -> str:
    return json.dumps(serving, default=_jsonable, indent=2)


def _example_forms(example: Any) -> tuple[Any, Any, dict[str, Any]]:
    """An input example's saved body, its serving request body, and MLflow's ``saved_input_example_info``."""
    import numpy as np

    pd = optional_pandas()
    info: dict[str, Any] = {"artifact_path": INPUT_EXAMPLE, "serving_input_path": SERVING_INPUT_EXAMPLE}
    params = split_example_params(example)[1]
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
    if params is not None:  # as MLflow saves them: beside the data, and in the request's "params"
        body, serving = {"inputs": body, "params": params}, {**serving, "params": params}
        info["params"] = "true"
    return body, serving, info


def parse_example_params(data: bytes, info: dict[str, Any]) -> dict[str, Any] | None:
    """The params saved with an input example (``None`` without any)."""
    if not info.get("params"):
        return None
    try:
        body = json.loads(data)
    except ValueError as e:
        raise CorruptRecordError(f"the model's input example is not JSON: {e}") from e
    params = body.get("params") if isinstance(body, dict) else None
    return params if isinstance(params, dict) else None


def parse_input_example(data: bytes, info: dict[str, Any], schema: Any) -> Any:
    """An input example read back from the JSON ``save_input_example`` (or MLflow) wrote, by
    its ``type``: a DataFrame (its numeric columns typed by ``schema``), an array or a dict."""
    import numpy as np

    try:
        body = json.loads(data)
    except ValueError as e:
        raise CorruptRecordError(f"the model's input example is not JSON: {e}") from e
    if info.get("params") and isinstance(body, dict) and "inputs" in body:
        body = body["inputs"]  # saved with its params beside it
    kind = info.get("type")
    if kind == "json_object":
        return body
    if kind == "ndarray":
        return np.asarray(body)
    if kind == "dataframe" and isinstance(body, dict):
        pd = optional_pandas()
        if pd is None:
            raise InvalidInputError("reading a DataFrame input example needs pandas: pip install pandas")
        frame = pd.DataFrame(body.get("data", []), columns=body.get("columns"))
        for spec in schema or []:
            numpy_type = NUMPY_DTYPES.get(getattr(spec, "type", ""), "object")
            if spec.name in frame.columns and numpy_type not in ("object", "datetime64[ns]"):
                frame[spec.name] = frame[spec.name].astype(numpy_type)
        return frame
    raise CorruptRecordError(f"the model's input example has type {kind!r}; expected dataframe, ndarray or json_object")


def _requirements(model_dir: str) -> list[str]:
    try:
        with open(os.path.join(model_dir, REQUIREMENTS), encoding="utf-8") as f:
            lines = [ln.strip() for ln in f]
    except FileNotFoundError:
        return []
    return [ln for ln in lines if ln and not ln.startswith(("#", "-"))]


def entry_from_mlmodel(
    model_dir: str, name: str, paths: Iterable[str], file_ref: Callable[[str], FileRef], run_id: str | None
) -> ModelEntry | None:
    """The casstore model entry of an MLflow model directory with an ``sklearn`` flavor
    (loaded by ``casstore.sklearn``), or None for another flavor. ``paths`` are the files
    inside the directory ('/'-separated); ``file_ref(path)`` gives each one's
    :class:`FileRef`, asked for only when the directory is a model casstore loads."""
    paths = sorted(paths)
    from casstore.models.entry import ModelEntry

    try:
        with open(os.path.join(model_dir, MLMODEL), encoding="utf-8") as f:
            ml = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise LocalFileError(f"cannot read the MLmodel file of {model_dir!r}: {e}") from e
    flavors = ml.get("flavors") if isinstance(ml, dict) else None
    sk = flavors.get("sklearn") if isinstance(flavors, dict) else None
    if not isinstance(ml, dict) or not isinstance(sk, dict) or sk.get("pickled_model") not in paths:
        return None
    fmt = str(sk.get("serialization_format") or "cloudpickle")
    conf: dict[str, Any] = {
        "pickled_model": sk["pickled_model"],
        "serialization_format": fmt,
        "sklearn_version": str(sk.get("sklearn_version") or ""),
        "code": sk.get("code"),
    }
    if fmt == "skops":
        from casstore.models.serialization import skops_untrusted_types

        conf["skops_untrusted_types"] = skops_untrusted_types(os.path.join(model_dir, *sk["pickled_model"].split("/")))
    out: dict[str, dict[str, Any]] = {"sklearn": conf}
    pf = flavors.get("python_function") if isinstance(flavors, dict) else None
    if isinstance(pf, dict):
        out["python_function"] = {
            "loader_module": "casstore.sklearn",
            "model_path": pf.get("model_path", sk["pickled_model"]),
            "predict_fn": pf.get("predict_fn", "predict"),
            "python_version": str(pf.get("python_version") or ""),
            "code": pf.get("code"),
        }
    signature = ml.get("signature")
    example = ml.get("saved_input_example_info")
    metadata = ml.get("metadata")
    return ModelEntry(
        name=name,
        flavors=out,
        files={p: file_ref(p) for p in paths},
        run_id=run_id,
        created=str(ml.get("utc_time_created") or ""),
        signature=signature if isinstance(signature, dict) else None,
        input_example=example if isinstance(example, dict) else None,
        requirements=_requirements(model_dir),
        metadata=metadata if isinstance(metadata, dict) else None,
    )
