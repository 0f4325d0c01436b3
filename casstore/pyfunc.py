"""``casstore.pyfunc``: custom Python models, and any logged model behind one ``predict``
that enforces its signature.

>>> class AddN(casstore.pyfunc.PythonModel):                                  # doctest: +SKIP
...     def __init__(self, n): self.n = n
...     def predict(self, context, model_input, params=None): return model_input + self.n
>>> info = casstore.pyfunc.log_model(name="add_n", python_model=AddN(5))       # doctest: +SKIP
>>> casstore.pyfunc.load_model(info.model_uri).predict(pd.DataFrame([range(10)]))  # doctest: +SKIP

A custom model is stored with cloudpickle; its ``artifacts`` (local paths or any artifact
URI) and ``code_paths`` are files of the model like the pickle, so the model digest pins
them all and a load verifies each before unpickling. Models load from ``runs:/``,
``models:/``, ``cas:`` URIs and from local model directories (``save_model``'s or MLflow's).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from casstore.exceptions import CorruptRecordError, InvalidInputError, ObjectNotFoundError
from casstore.models import _context
from casstore.models.fetch import FetchedModel, fetch_model, load_entry
from casstore.models.local import add_code_to_path, artifacts_model_dir, fetch_local_dir, is_model_uri, kept_dir
from casstore.models.mlmodel import python_version
from casstore.models.pyfunc import FLAVOR_NAME, ModelMetadata, PyFuncModel, pyfunc_from_fetched
from casstore.models.python_model import (
    FunctionModel,
    PythonModel,
    PythonModelContext,
    PythonModelPredictor,
    model_from_code,
)
from casstore.models.requirements import pickle_modules, pin_requirements, resolve_requirements
from casstore.models.save import model_name as save_model_name
from casstore.models.save import (
    ModelInfo,
    PreparedModel,
    copy_code_paths,
    log_prepared_model,
    model_file,
    new_model_dir,
    prepare_example_and_signature,
    save_prepared_model,
)
from casstore.models.serialization import CLOUDPICKLE, dump_model, load_model_file
from casstore.models.signature import ModelSignature
from casstore.registry.layout import check_model_name

if TYPE_CHECKING:
    from casstore.runs import RunStore

__all__ = [
    "FLAVOR_NAME",
    "PyFuncModel",
    "ModelMetadata",
    "PythonModel",
    "PythonModelContext",
    "log_model",
    "save_model",
    "load_model",
    "get_model_dependencies",
]

#: the cloudpickled ``PythonModel`` inside the model directory (MLflow's name)
PYTHON_MODEL_FILE = "python_model.pkl"
#: where a custom model's artifacts go inside the model directory (MLflow's name)
ARTIFACTS_DIR = "artifacts"


def _check_python_model(python_model: object, loader_module: object, data_path: object) -> PythonModel:
    if loader_module is not None or data_path is not None:
        raise InvalidInputError(
            "loader_module and data_path models are not supported: give python_model, a PythonModel instance "
            "(or a function), whose pickle casstore verifies before loading"
        )
    if python_model is None:
        raise InvalidInputError("give python_model: an instance of casstore.pyfunc.PythonModel, or a function")
    if isinstance(python_model, (str, os.PathLike)):
        return _CodeFile(os.fspath(python_model))
    if isinstance(python_model, PythonModel) or callable(getattr(python_model, "predict", None)):
        return python_model  # type: ignore[return-value]
    if callable(python_model):
        return FunctionModel(python_model)
    raise InvalidInputError(
        f"python_model must be a PythonModel instance or a function, got {type(python_model).__name__}"
    )


class _CodeFile(PythonModel):
    """A model from code: the file that defines it, and the model it sets once run."""

    def __init__(self, path: str) -> None:
        if not (os.path.isfile(path) and path.endswith(".py")):
            raise InvalidInputError(f"python_model {path!r}: a model from code is a Python file (.py) that calls "
                                    "casstore.models.set_model(model), and there is no such file")
        self.path = path
        self.model = model_from_code(path)


def _copy_artifacts(model_dir: str, artifacts: dict[str, str] | None) -> dict[str, dict[str, str]]:
    """Copy each artifact (a local path or any URI ``casstore.artifacts.download_artifacts``
    reads) into ``artifacts/``; return MLflow's ``artifacts`` config."""
    if not artifacts:
        return {}
    if not isinstance(artifacts, dict) or not all(isinstance(k, str) and isinstance(v, (str, os.PathLike)) for k, v in artifacts.items()):
        raise InvalidInputError("artifacts must be a dict of artifact name to a local path or artifact URI")
    from casstore.artifacts import download_artifacts

    base = os.path.join(model_dir, ARTIFACTS_DIR)
    os.makedirs(base, exist_ok=True)
    config: dict[str, dict[str, str]] = {}
    used: set[str] = set()
    for name, source in sorted(artifacts.items()):
        src = os.fspath(source)
        if "://" in src or src.startswith(("runs:", "models:", "cas:")):
            with tempfile.TemporaryDirectory(prefix="casstore-artifact-") as tmp:
                local = download_artifacts(src, dst_path=tmp)
                rel = _place(base, local, name, used)
        else:
            if not os.path.exists(src):
                raise InvalidInputError(f"artifact {name!r}: no file or directory at {src!r}")
            rel = _place(base, src, name, used)
        config[name] = {"path": f"{ARTIFACTS_DIR}/{rel}", "uri": src}
    return config


def _place(base: str, src: str, name: str, used: set[str]) -> str:
    """Copy ``src`` into ``base`` under its own name (the artifact's name if taken)."""
    rel = os.path.basename(os.path.normpath(src)) or name
    if rel in used:
        rel = f"{name}-{rel}"
    if rel in used:
        raise InvalidInputError(f"artifact {name!r}: two artifacts would be stored as {rel!r}")
    used.add(rel)
    target = os.path.join(base, rel)
    if os.path.isdir(src):
        shutil.copytree(src, target)
    else:
        shutil.copy2(src, target)
    return rel


def _prepare(
    model_dir: str,
    python_model: Any,
    *,
    artifacts: dict[str, str] | None,
    code_paths: Sequence[str | os.PathLike[str]] | None,
    signature: ModelSignature | None | bool,
    input_example: Any,
    pip_requirements: object,
    extra_pip_requirements: object,
    model_config: dict[str, Any] | None,
) -> PreparedModel:
    import cloudpickle

    if isinstance(python_model, _CodeFile):  # the file itself, run again at load time: no pickle
        model_file = {"model_code_path": os.path.basename(python_model.path)}
        shutil.copy2(python_model.path, os.path.join(model_dir, model_file["model_code_path"]))
        python_model, modules = python_model.model, set()
    else:
        model_file = {"python_model": PYTHON_MODEL_FILE}
        data_path = os.path.join(model_dir, PYTHON_MODEL_FILE)
        try:
            dump_model(python_model, data_path, CLOUDPICKLE)
        except InvalidInputError:
            raise
        except Exception as e:  # noqa: BLE001 - any pickling failure means the model cannot be stored
            raise InvalidInputError(f"cannot serialize python_model with cloudpickle: {type(e).__name__}: {e}") from e
        with open(data_path, "rb") as f:
            modules = pickle_modules(f)
    artifacts_conf = _copy_artifacts(model_dir, artifacts)
    code = copy_code_paths(model_dir, code_paths)
    predictor: Callable[[Any], Any] | None = None
    if input_example is not None:
        context = PythonModelContext(
            {k: os.path.join(model_dir, v["path"]) for k, v in artifacts_conf.items()}, model_config
        )

        def predictor(x: Any) -> Any:
            python_model.load_context(context)
            return PythonModelPredictor(python_model, context).predict(x)

    signature, example_info = prepare_example_and_signature(model_dir, input_example, signature, predictor)
    requirements = resolve_requirements(pin_requirements(modules, ["cloudpickle"]), pip_requirements, extra_pip_requirements)
    conf: dict[str, Any] = {
        **model_file,
        "cloudpickle_version": cloudpickle.__version__,
        "python_version": python_version(),
        "code": code,
    }
    if artifacts_conf:
        conf["artifacts"] = artifacts_conf
    if model_config:
        conf["model_config"] = dict(model_config)
    flavors = {FLAVOR_NAME: {"loader_module": __name__, **conf}}
    ml_flavors = {FLAVOR_NAME: {"loader_module": "mlflow.pyfunc.model", **conf}}
    return PreparedModel(model_dir, flavors, ml_flavors, requirements, signature, example_info)


def log_model(
    artifact_path: str | None = None,
    loader_module: str | None = None,
    data_path: str | None = None,
    code_paths: Sequence[str | os.PathLike[str]] | None = None,
    python_model: Any = None,
    artifacts: dict[str, str] | None = None,
    registered_model_name: str | None = None,
    signature: ModelSignature | None | bool = None,
    input_example: Any = None,
    pip_requirements: Sequence[str] | str | None = None,
    extra_pip_requirements: Sequence[str] | str | None = None,
    metadata: dict[str, Any] | None = None,
    model_config: dict[str, Any] | None = None,
    *,
    name: str | None = None,
    tags: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    model_type: str | None = None,
    step: int = 0,
) -> ModelInfo:
    """Log a custom model (``python_model``: a :class:`PythonModel` or a function) as
    ``name`` in the active run (or a run of its own) and return its :class:`ModelInfo`.

    ``artifacts`` maps names to local paths or artifact URIs; each is copied into the
    model and reaches ``load_context`` as ``context.artifacts[name]``, a local path.
    ``code_paths`` are put on ``sys.path`` when the model is loaded.
    ``model_type`` (a label such as ``"regressor"``) and ``step`` are MLflow 3's: kept in the
    model entry, they are the logged model's ``model_type`` and the step of the run's metrics
    that are the logged model's metrics."""
    model_name = save_model_name(name, artifact_path)
    model = _check_python_model(python_model, loader_module, data_path)
    if registered_model_name is not None:
        check_model_name(registered_model_name)
    with tempfile.TemporaryDirectory(prefix="casstore-model-") as d:
        prepared = _prepare(
            d, model, artifacts=artifacts, code_paths=code_paths, signature=signature, input_example=input_example,
            pip_requirements=pip_requirements, extra_pip_requirements=extra_pip_requirements, model_config=model_config,
        )
        with _context.logging_run() as handle:
            return log_prepared_model(
                handle, prepared, model_name, metadata=metadata, tags=tags, params=params,
                registered_model_name=registered_model_name, model_type=model_type, step=step,
            )


def save_model(
    path: str | os.PathLike[str],
    loader_module: str | None = None,
    data_path: str | None = None,
    code_paths: Sequence[str | os.PathLike[str]] | None = None,
    conda_env: object = None,
    mlflow_model: object = None,
    python_model: Any = None,
    artifacts: dict[str, str] | None = None,
    signature: ModelSignature | None | bool = None,
    input_example: Any = None,
    pip_requirements: Sequence[str] | str | None = None,
    extra_pip_requirements: Sequence[str] | str | None = None,
    metadata: dict[str, Any] | None = None,
    model_config: dict[str, Any] | None = None,
) -> str:
    """Save a custom model as a model directory at ``path`` (new, or empty); return its
    model digest. :func:`load_model` of the directory verifies every file against it."""
    if conda_env is not None or mlflow_model is not None:
        raise InvalidInputError("save_model: conda_env and mlflow_model are not supported; use pip_requirements")
    model = _check_python_model(python_model, loader_module, data_path)
    with new_model_dir(path) as d:
        prepared = _prepare(
            d, model, artifacts=artifacts, code_paths=code_paths, signature=signature, input_example=input_example,
            pip_requirements=pip_requirements, extra_pip_requirements=extra_pip_requirements, model_config=model_config,
        )
        return save_prepared_model(prepared, metadata)


# ---- loading ---------------------------------------------------------------------------------


def _load_pyfunc_from_fetched(fetched: FetchedModel, **kwargs: Any) -> PythonModelPredictor:
    """The loader of custom models: unpickle the verified ``python_model.pkl`` (with the
    model's ``code/`` on ``sys.path``) and call its ``load_context``."""
    entry = fetched.entry
    conf = entry.flavor(FLAVOR_NAME)
    code_file = conf.get("model_code_path")
    data_file = conf.get("python_model") if code_file is None else code_file
    if not isinstance(data_file, str) or data_file not in entry.files:
        raise CorruptRecordError(f"model {entry.name!r} names python model {data_file!r}, which is not one of its verified files")
    add_code_to_path(fetched, conf.get("code"))
    artifacts: dict[str, str] = {}
    for art_name, info in (conf.get("artifacts") or {}).items():
        rel = info.get("path") if isinstance(info, dict) else None
        if not isinstance(rel, str) or not any(p == rel or p.startswith(rel + "/") for p in entry.files):
            raise CorruptRecordError(f"model {entry.name!r}: artifact {art_name!r} names {rel!r}, which it does not hold")
        artifacts[str(art_name)] = os.path.join(fetched.path, *rel.split("/"))
    if code_file is not None:  # run from a copy of the verified bytes, as the model's code is
        target = os.path.join(kept_dir("casstore-code-"), os.path.basename(data_file))
        with fetched.take(data_file) as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out)
        python_model = model_from_code(target)
    else:
        with fetched.take(data_file) as f:
            python_model = load_model_file(f, CLOUDPICKLE)
    context = PythonModelContext(artifacts, conf.get("model_config"))
    python_model.load_context(context)
    return PythonModelPredictor(python_model, context)


def load_model(
    model_uri: str | os.PathLike[str],
    suppress_warnings: bool = False,
    dst_path: str | os.PathLike[str] | None = None,
    model_config: dict[str, Any] | None = None,
    *,
    skops_trusted_types: Sequence[str] | None = None,
    store: RunStore | None = None,
) -> PyFuncModel:
    """Load a model as a :class:`PyFuncModel` from a ``runs:/``, ``models:/`` or ``cas:``
    URI, or a local model directory.

    Every file is verified against the model entry (and the entry against a registry
    version's pin) before anything is deserialized. ``skops_trusted_types`` names the
    types a skops model may build beyond those skops trusts by default. A custom
    model's files stay on disk while the process runs (its artifacts are read by path)."""
    dest = os.fspath(dst_path) if dst_path is not None else None
    keep = dest is not None
    if is_model_uri(model_uri):
        from casstore.models.uri import resolve_model_uri

        s = store or _context.current_store()
        try:
            resolved = resolve_model_uri(str(model_uri).strip(), s)
        except ObjectNotFoundError:
            local = artifacts_model_dir(str(model_uri).strip(), s)
            if local is None:
                raise
            return load_model(local, suppress_warnings, dst_path, model_config, skops_trusted_types=skops_trusted_types)
        scratch = dest is None and _is_python_model(load_entry(s, resolved.model_digest).flavors)
        if scratch:
            dest, keep = kept_dir("casstore-pyfunc-"), True
        fetched = fetch_model(s, resolved.model_digest, dest, scratch=scratch)
        fetched.resolved = resolved
    else:
        fetched = fetch_local_dir(model_uri, dest if dest is not None else kept_dir("casstore-pyfunc-"), scratch=dest is None)
        keep = keep or _is_python_model(fetched.entry.flavors)
    try:
        kwargs: dict[str, Any] = {}
        if skops_trusted_types is not None:
            kwargs["skops_trusted_types"] = skops_trusted_types
        if model_config and _is_python_model(fetched.entry.flavors):
            fetched.entry.flavors[FLAVOR_NAME]["model_config"] = dict(model_config)
        return pyfunc_from_fetched(fetched, os.fspath(model_uri), **kwargs)
    finally:
        if not keep:
            fetched.cleanup()


def get_model_dependencies(model_uri: str, format: str = "pip") -> str:  # noqa: A002 - MLflow's name
    """The path of a local copy of a model's requirements, as MLflow's: ``format="pip"``
    gives its ``requirements.txt``, ``"conda"`` its ``conda.yaml`` (verified, written to a
    private directory; a local model directory's own file is returned as it is)."""
    name = {"pip": "requirements.txt", "conda": "conda.yaml"}.get(format)
    if name is None:
        raise InvalidInputError(f"format must be 'pip' or 'conda', not {format!r}")
    if not is_model_uri(model_uri):
        path = os.path.join(os.fspath(model_uri), name)
        if not os.path.isfile(path):
            raise ObjectNotFoundError(f"the model directory {os.fspath(model_uri)!r} has no {name}")
        return path
    _, entry, data = model_file(model_uri, name, None)
    if data is None:
        raise ObjectNotFoundError(f"model {entry.name!r} ({model_uri}) has no {name}")
    path = os.path.join(kept_dir("casstore-deps-"), name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def _is_python_model(flavors: dict[str, dict[str, Any]]) -> bool:
    return flavors.get(FLAVOR_NAME, {}).get("loader_module") == __name__
