"""The scikit-learn flavor: log, load and serve sklearn models.

>>> import casstore as mlflow, casstore.sklearn                  # doctest: +SKIP
>>> info = mlflow.sklearn.log_model(model, name="clf")           # doctest: +SKIP
>>> mlflow.sklearn.load_model(info.model_uri).predict(X)         # doctest: +SKIP

The model is serialized with cloudpickle (default), pickle or skops. Loading
verifies every file against the model entry (and a registry version's pin)
before it is deserialized. A skops model is built only from the types skops
trusts plus those you name in ``skops_trusted_types`` at load time.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from casstore.exceptions import CorruptRecordError, InvalidInputError
from casstore.models import _context
from casstore.models.fetch import FetchedModel
from casstore.models.mlmodel import python_version
from casstore.models.requirements import pickle_modules, pin_requirements, resolve_requirements, skops_modules
from casstore.models.local import add_code_to_path, fetch_model_or_dir
from casstore.models.save import model_name as save_model_name
from casstore.models.save import (
    ModelInfo,
    PreparedModel,
    copy_code_paths,
    log_prepared_model,
    new_model_dir,
    prepare_example_and_signature,
    save_prepared_model,
)
from casstore.models.serialization import (
    CLOUDPICKLE,
    DEFAULT_FORMAT,
    FORMATS,
    PICKLE,
    SKOPS,
    check_format,
    dump_model,
    load_model_file,
    model_file_name,
    skops_untrusted_types,
)
from casstore.models.signature import ModelSignature
from casstore.registry.layout import check_model_name

if TYPE_CHECKING:
    from casstore.runs import RunStore

__all__ = [
    "FLAVOR_NAME",
    "SERIALIZATION_FORMAT_CLOUDPICKLE",
    "SERIALIZATION_FORMAT_PICKLE",
    "SERIALIZATION_FORMAT_SKOPS",
    "SUPPORTED_SERIALIZATION_FORMATS",
    "log_model",
    "save_model",
    "load_model",
    "autolog",
]

FLAVOR_NAME = "sklearn"
SERIALIZATION_FORMAT_CLOUDPICKLE = CLOUDPICKLE
SERIALIZATION_FORMAT_PICKLE = PICKLE
SERIALIZATION_FORMAT_SKOPS = SKOPS
SUPPORTED_SERIALIZATION_FORMATS = list(FORMATS)


def _sklearn() -> Any:
    try:
        import sklearn
    except ImportError as e:
        raise InvalidInputError("the sklearn flavor needs scikit-learn: pip install 'casstore[sklearn]'") from e
    return sklearn


def _prepare(
    sk_model: Any,
    model_dir: str,
    *,
    serialization_format: str,
    signature: ModelSignature | None | bool,
    input_example: Any,
    pip_requirements: object,
    extra_pip_requirements: object,
    code_paths: Sequence[str | os.PathLike[str]] | None,
    skops_trusted_types: Sequence[str] | None,
    pyfunc_predict_fn: str,
) -> PreparedModel:
    sklearn = _sklearn()
    fmt = check_format(serialization_format)
    data_file = model_file_name(fmt)
    data_path = os.path.join(model_dir, data_file)
    dump_model(sk_model, data_path, fmt)
    needs = ["scikit-learn"] + (["cloudpickle"] if fmt == CLOUDPICKLE else []) + (["skops"] if fmt == SKOPS else [])
    if fmt == SKOPS:
        modules = skops_modules(data_path)
    else:
        with open(data_path, "rb") as f:
            modules = pickle_modules(f)
    predict = getattr(sk_model, pyfunc_predict_fn, None)
    signature, example_info = prepare_example_and_signature(model_dir, input_example, signature, predict)
    if signature is not None and signature.inputs is not None and not signature.inputs.is_tensor_spec():
        needs.append("pandas")  # column signatures are checked with pandas
    requirements = resolve_requirements(pin_requirements(modules, needs), pip_requirements, extra_pip_requirements)
    code = copy_code_paths(model_dir, code_paths)
    sk_conf: dict[str, Any] = {
        "pickled_model": data_file,
        "serialization_format": fmt,
        "sklearn_version": sklearn.__version__,
        "code": code,
    }
    flavors: dict[str, dict[str, Any]] = {FLAVOR_NAME: dict(sk_conf)}
    if fmt == SKOPS:
        flavors[FLAVOR_NAME]["skops_untrusted_types"] = skops_untrusted_types(data_path)
    ml_flavors: dict[str, dict[str, Any]] = {
        FLAVOR_NAME: {**sk_conf, "skops_trusted_types": list(skops_trusted_types) if skops_trusted_types else None}
    }
    if callable(predict):
        pf = {"model_path": data_file, "predict_fn": pyfunc_predict_fn, "python_version": python_version(), "code": code}
        flavors["python_function"] = {"loader_module": __name__, **pf}
        ml_flavors["python_function"] = {"loader_module": "mlflow.sklearn", **pf}
    return PreparedModel(model_dir, flavors, ml_flavors, requirements, signature, example_info)


def log_model(
    sk_model: Any,
    name: str | None = None,
    *,
    artifact_path: str | None = None,
    signature: ModelSignature | None | bool = None,
    input_example: Any = None,
    registered_model_name: str | None = None,
    serialization_format: str = DEFAULT_FORMAT,
    pip_requirements: Sequence[str] | str | None = None,
    extra_pip_requirements: Sequence[str] | str | None = None,
    code_paths: Sequence[str | os.PathLike[str]] | None = None,
    metadata: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    skops_trusted_types: Sequence[str] | None = None,
    pyfunc_predict_fn: str = "predict",
    params: dict[str, Any] | None = None,
    model_type: str | None = None,
    step: int = 0,
) -> ModelInfo:
    """Log a scikit-learn model as ``name`` in the active run (or in a run of its own
    when none is active) and return its :class:`ModelInfo`.

    ``signature=None`` with an ``input_example`` infers the signature from the example;
    ``registered_model_name`` also registers the model as the next version of that name.
    ``skops_trusted_types`` is only written to ``MLmodel`` for MLflow's loader; casstore
    asks for the trusted types when the model is loaded.
    ``model_type`` (a label such as ``"regressor"``) and ``step`` are MLflow 3's: kept in the
    model entry, they are the logged model's ``model_type`` and the step of the run's metrics
    that are the logged model's metrics.
    """
    model_name = save_model_name(name, artifact_path, how="as `name` (or as the second argument)")
    if registered_model_name is not None:
        check_model_name(registered_model_name)  # refuse a bad name before anything is logged
    with tempfile.TemporaryDirectory(prefix="casstore-model-") as d:
        prepared = _prepare(
            sk_model,
            d,
            serialization_format=serialization_format,
            signature=signature,
            input_example=input_example,
            pip_requirements=pip_requirements,
            extra_pip_requirements=extra_pip_requirements,
            code_paths=code_paths,
            skops_trusted_types=skops_trusted_types,
            pyfunc_predict_fn=pyfunc_predict_fn,
        )
        with _context.logging_run() as handle:
            return log_prepared_model(
                handle, prepared, model_name, metadata=metadata, tags=tags, params=params,
                registered_model_name=registered_model_name, model_type=model_type, step=step,
            )


def save_model(
    sk_model: Any,
    path: str | os.PathLike[str],
    conda_env: object = None,
    code_paths: Sequence[str | os.PathLike[str]] | None = None,
    mlflow_model: object = None,
    serialization_format: str = DEFAULT_FORMAT,
    signature: ModelSignature | None | bool = None,
    input_example: Any = None,
    pip_requirements: Sequence[str] | str | None = None,
    extra_pip_requirements: Sequence[str] | str | None = None,
    pyfunc_predict_fn: str = "predict",
    metadata: dict[str, Any] | None = None,
    skops_trusted_types: Sequence[str] | None = None,
) -> str:
    """Save a scikit-learn model as a model directory at ``path`` (which must not exist, or
    be empty), readable by :func:`load_model` and by MLflow; return its model digest.

    The directory holds the model entry (``casstore-model.msgpack``), so a load checks
    every file against it before unpickling."""
    if conda_env is not None or mlflow_model is not None:
        raise InvalidInputError("save_model: conda_env and mlflow_model are not supported; use pip_requirements")
    with new_model_dir(path) as d:
        prepared = _prepare(
            sk_model,
            d,
            serialization_format=serialization_format,
            signature=signature,
            input_example=input_example,
            pip_requirements=pip_requirements,
            extra_pip_requirements=extra_pip_requirements,
            code_paths=code_paths,
            skops_trusted_types=skops_trusted_types,
            pyfunc_predict_fn=pyfunc_predict_fn,
        )
        return save_prepared_model(prepared, metadata)


# ---- loading ---------------------------------------------------------------------------

def _load_from_fetched(fetched: FetchedModel, skops_trusted_types: Sequence[str] | None = None) -> Any:
    entry = fetched.entry
    conf = entry.flavor(FLAVOR_NAME)
    data_file = conf.get("pickled_model")
    if not isinstance(data_file, str) or data_file not in entry.files:
        raise CorruptRecordError(f"model {entry.name!r}: its sklearn flavor names {data_file!r}, which is not one of its verified files")
    fmt = conf.get("serialization_format", PICKLE)
    if fmt not in FORMATS:
        raise CorruptRecordError(f"model {entry.name!r} has unknown serialization format {fmt!r}")
    _sklearn()
    add_code_to_path(fetched, conf.get("code"))
    with fetched.take(data_file) as f:
        return load_model_file(f, fmt, skops_trusted_types)


def _load_pyfunc_from_fetched(fetched: FetchedModel, skops_trusted_types: Sequence[str] | None = None) -> Any:
    """The pyfunc loader: the estimator itself (its ``predict_fn`` is called)."""
    return _load_from_fetched(fetched, skops_trusted_types)


def load_model(
    model_uri: str | os.PathLike[str],
    dst_path: str | os.PathLike[str] | None = None,
    *,
    skops_trusted_types: Sequence[str] | None = None,
    store: RunStore | None = None,
) -> Any:
    """Load a scikit-learn model from ``runs:/``, ``models:/`` or ``cas:`` URIs, or from a
    local model directory (``save_model``'s, or one MLflow wrote).

    Every file is verified against the model entry, and the entry against the registry
    pin, before the model is deserialized; a mismatch raises ``IntegrityError``.
    ``dst_path`` keeps the verified model directory there (default: none is kept; a
    large model file is held in memory, the others go to a temp directory removed
    after loading).
    """
    fetched = fetch_model_or_dir(model_uri, store, dest=os.fspath(dst_path) if dst_path is not None else None)
    try:
        return _load_from_fetched(fetched, skops_trusted_types)
    finally:
        if dst_path is None:
            fetched.cleanup()


def autolog(
    log_input_examples: bool = False,
    log_model_signatures: bool = True,
    log_models: bool = True,
    log_datasets: bool = True,
    disable: bool = False,
    exclusive: bool = False,
    disable_for_unsupported_versions: bool = False,
    silent: bool = False,
    max_tuning_runs: int | None = 5,
    log_post_training_metrics: bool = True,
    serialization_format: str = SERIALIZATION_FORMAT_CLOUDPICKLE,
    registered_model_name: str | None = None,
    pos_label: Any = None,
    extra_tags: dict[str, str] | None = None,
) -> None:
    """Record every scikit-learn ``fit``: params, training metrics, the model, searches'
    child runs (see ``casstore/_sklearn_autolog.py``); ``disable=True`` turns it off."""
    from casstore._sklearn_autolog import autolog as _autolog

    _autolog(
        log_input_examples=log_input_examples, log_model_signatures=log_model_signatures, log_models=log_models,
        log_datasets=log_datasets, disable=disable, exclusive=exclusive,
        disable_for_unsupported_versions=disable_for_unsupported_versions, silent=silent,
        max_tuning_runs=max_tuning_runs, log_post_training_metrics=log_post_training_metrics,
        serialization_format=serialization_format, registered_model_name=registered_model_name,
        pos_label=pos_label, extra_tags=extra_tags, log_model=log_model,
    )
