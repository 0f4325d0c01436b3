"""Logging a prepared model directory into a run: files, entry, registration.

A flavor (``casstore.sklearn``) serializes its model into a directory and says
which flavors it offers; this module does the rest, the same for every flavor:
the input example and the signature inferred from it, ``code/``, the environment
files, ``MLmodel``, the files as run artifacts (one durability barrier), the model
entry (:meth:`RunHandle.add_model`) and, if asked, a registry version.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from casstore._files import sync_tree
from casstore._paths import clean_artifact_path
from casstore.exceptions import InvalidInputError, LocalFileError, ResourceAlreadyExistsError
from casstore.models import _context, mlmodel
from casstore.models.entry import FileRef, ModelEntry, check_metadata, entry_digest
from casstore.models.signature import ModelSignature, infer_param_schema, infer_schema, optional_pandas
from casstore.runs.layout import check_whole

if TYPE_CHECKING:
    from casstore.registry.store import Registry
    from casstore.runs import RunHandle, RunStore

__all__ = [
    "ModelInfo", "get_model_info", "PreparedModel", "ENTRY_FILE", "prepare_example_and_signature", "copy_code_paths",
    "write_model_metadata", "save_prepared_model", "log_prepared_model", "new_model_dir", "model_name",
]

#: the name (directory in the run) of a model logged without one, as MLflow's
DEFAULT_MODEL_NAME = "model"


def model_name(name: str | None, artifact_path: str | None, *, how: str = "as `name`") -> str:
    """The name a flavor's ``log_model`` logs under: ``name``, else MLflow's deprecated
    ``artifact_path`` (with a warning), else ``"model"``; both, differing, are refused."""
    if artifact_path is not None:
        warnings.warn(
            f"log_model(artifact_path=...) is deprecated; pass the model's name {how}",
            DeprecationWarning,
            stacklevel=3,
        )
        if name is not None and name != artifact_path:
            raise InvalidInputError(f"log_model got name={name!r} and artifact_path={artifact_path!r}; pass only name")
        return artifact_path
    return name if name is not None else DEFAULT_MODEL_NAME

CODE_DIR = "code"
#: where ``save_model`` puts the model entry in a local model directory (not one of its files)
ENTRY_FILE = "casstore-model.msgpack"
#: how ``utc_time_created`` is written (MLflow's form), always in UTC
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class ModelInfo:
    """What ``log_model`` returns (MLflow's ``ModelInfo`` fields, plus ``model_digest``).

    ``tags`` are the tags given to ``log_model``, as the model entry records them."""

    model_uri: str
    model_digest: str
    run_id: str
    artifact_path: str
    flavors: dict[str, dict[str, Any]]
    signature: ModelSignature | None
    utc_time_created: str
    model_uuid: str
    registered_model_version: int | None = None
    requirements: list[str] = field(default_factory=list)
    metadata: dict[str, Any] | None = None
    saved_input_example_info: dict[str, Any] | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.artifact_path

    @property
    def creation_timestamp(self) -> int:
        """When the model was logged, in milliseconds since the epoch (``utc_time_created``)."""
        t = dt.datetime.strptime(self.utc_time_created, _TIME_FORMAT).replace(tzinfo=dt.timezone.utc)
        return (t - _EPOCH) // dt.timedelta(milliseconds=1)

    @property
    def signature_dict(self) -> dict[str, Any] | None:
        return self.signature.to_dict() if self.signature else None

    @property
    def model_id(self) -> str:
        """MLflow 3's id of a logged model: here its model digest (``models:/<model_id>`` loads it)."""
        return self.model_digest

    @property
    def cas_uri(self) -> str:
        """``cas:<model_digest>``: this model, by digest alone."""
        return f"cas:{self.model_digest}"


@dataclass
class PreparedModel:
    """A flavor's model directory, ready to log."""

    model_dir: str
    #: flavors as recorded in the model entry (what casstore loads with)
    flavors: dict[str, dict[str, Any]]
    #: flavors as written to ``MLmodel`` (what MLflow loads with)
    mlmodel_flavors: dict[str, dict[str, Any]]
    requirements: list[str]
    signature: ModelSignature | None = None
    input_example_info: dict[str, Any] | None = None


def prepare_example_and_signature(
    model_dir: str, input_example: Any, signature: ModelSignature | None | bool, predict: Callable[[Any], Any] | None
) -> tuple[ModelSignature | None, dict[str, Any] | None]:
    """Save the input example; with no signature given, infer one from the example as
    given (not from its JSON form, which loses numpy dtypes such as ``object`` or
    ``float32``), and its output from ``predict`` of the example, if that works."""
    if signature is not None and signature is not False and not isinstance(signature, ModelSignature):
        raise InvalidInputError(f"signature must be a ModelSignature (see casstore.models.infer_signature), got {type(signature).__name__}")
    info = mlmodel.save_input_example(model_dir, input_example) if input_example is not None else None
    if signature is False:
        return None, info
    if signature is None and input_example is not None:
        example = mlmodel.input_example_data(input_example)
        params = mlmodel.split_example_params(input_example)[1]
        inputs = infer_schema(example)
        outputs = None
        if predict is not None:
            try:
                outputs = infer_schema(_rows_as_column(predict(example), inputs))
            except Exception:  # noqa: BLE001 - the output schema is optional; inputs still describe the model
                outputs = None
        return ModelSignature(inputs, outputs, infer_param_schema(params) if params else None), info
    return (signature if isinstance(signature, ModelSignature) else None), info


def _rows_as_column(prediction: Any, inputs: Any) -> Any:
    """A 1-D array predicted from named columns is one value per row: a column (a Series),
    as MLflow infers it, rather than a tensor."""
    import numpy as np

    if not inputs.is_tensor_spec() and isinstance(prediction, np.ndarray) and prediction.ndim == 1:
        pd = optional_pandas()
        if pd is not None:
            return pd.Series(prediction)
    return prediction


def copy_code_paths(model_dir: str, code_paths: Sequence[str | os.PathLike[str]] | None) -> str | None:
    """Copy local code files or directories into ``<model_dir>/code``; return ``"code"`` or None."""
    if not code_paths:
        return None
    if isinstance(code_paths, (str, os.PathLike)):
        raise InvalidInputError("code_paths must be a list of paths, not a single path")
    dest = os.path.join(model_dir, CODE_DIR)
    os.makedirs(dest, exist_ok=True)
    for p in code_paths:
        src = os.fspath(p)
        target = os.path.join(dest, os.path.basename(os.path.normpath(src)))
        if os.path.exists(target):
            raise InvalidInputError(f"code_paths: two entries are named {os.path.basename(target)!r}")
        try:
            if os.path.isdir(src):
                shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(src, target)
        except OSError as e:
            raise LocalFileError(f"cannot copy code path {src!r} into the model: {e.strerror or e}") from e
    return CODE_DIR


def _model_files(model_dir: str) -> list[tuple[str, str]]:
    out = []
    for dirpath, dirnames, filenames in os.walk(model_dir):
        dirnames.sort()
        for fn in sorted(filenames):
            full = os.path.join(dirpath, fn)
            out.append((os.path.relpath(full, model_dir).replace(os.sep, "/"), full))
    return out


def _casstore_version() -> str:
    from casstore import __version__

    return __version__


def _utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime(_TIME_FORMAT)


def write_model_metadata(
    prepared: PreparedModel, name: str, run_id: str | None, metadata: dict[str, Any] | None
) -> tuple[str, str, dict[str, dict[str, Any]]]:
    """Write the environment files and ``MLmodel`` into the model directory; return the
    creation time, the model's uuid and its flavors, as ``MLmodel`` records them."""
    d = prepared.model_dir
    created = _utc_now()
    model_uuid = uuid.uuid4().hex
    env = mlmodel.write_env_files(d, prepared.requirements)
    ml_flavors = {k: dict(v) for k, v in prepared.mlmodel_flavors.items()}
    if "python_function" in ml_flavors:
        ml_flavors["python_function"]["env"] = env
    size = sum(os.path.getsize(f) for _, f in _model_files(d))
    fields: dict[str, Any] = {
        "artifact_path": name,
        "flavors": ml_flavors,
        "utc_time_created": created,
        "model_uuid": model_uuid,
        "model_size_bytes": size,
        "casstore_version": _casstore_version(),
    }
    if run_id is not None:
        fields["run_id"] = run_id
    if prepared.signature is not None:
        fields["signature"] = prepared.signature.to_dict()
        # MLflow 3's: whether the signature came from type hints (casstore infers it from examples)
        fields["is_signature_from_type_hint"] = fields["type_hint_from_example"] = False
    if prepared.input_example_info is not None:
        fields["saved_input_example_info"] = prepared.input_example_info
    if metadata is not None:
        fields["metadata"] = metadata
    mlmodel.write_mlmodel(d, fields)
    return created, model_uuid, ml_flavors


def _entry(
    prepared: PreparedModel, name: str, refs: dict[str, FileRef], run_id: str | None, created: str,
    metadata: dict[str, Any] | None, tags: dict[str, str], model_type: str | None = None, step: int = 0,
) -> ModelEntry:
    return ModelEntry(
        name=name,
        flavors=prepared.flavors,
        files=refs,
        run_id=run_id,
        created=created,
        signature=prepared.signature.to_dict() if prepared.signature else None,
        input_example=prepared.input_example_info,
        requirements=prepared.requirements,
        metadata=metadata,
        tags=tags,
        model_type=model_type,
        step=step,
    )


def save_prepared_model(prepared: PreparedModel, metadata: dict[str, Any] | None = None) -> str:
    """Finish a model directory saved to a local path (``save_model``): ``MLmodel``, the
    environment files, and the model entry in :data:`ENTRY_FILE`, which lists every file
    with its BLAKE3 digest so a load verifies them; return the model digest."""
    from casstore.objects.codec import pack
    from casstore.objects.digest import hash_file

    metadata = check_metadata(metadata)
    name = os.path.basename(os.path.normpath(prepared.model_dir)) or "model"
    created, _, _ = write_model_metadata(prepared, name, None, metadata)
    refs = {rel: FileRef(rel, *hash_file(full)) for rel, full in _model_files(prepared.model_dir)}
    entry = _entry(prepared, name, refs, None, created, metadata, {})
    raw = entry.to_dict()
    with open(os.path.join(prepared.model_dir, ENTRY_FILE), "wb") as f:
        f.write(pack(raw))
    return entry_digest(raw)


@contextmanager
def new_model_dir(path: str | os.PathLike[str]) -> Iterator[str]:
    """The directory ``save_model`` writes into: created, and refused if it exists and is
    not empty (as MLflow refuses it); removed again if saving fails; synced, every file
    and directory, once saved."""
    target = os.path.abspath(os.fspath(path))
    if os.path.exists(target) and (not os.path.isdir(target) or os.listdir(target)):
        raise ResourceAlreadyExistsError(
            f"cannot save a model to {target!r}: the path already exists and is not an empty directory; "
            "choose a new path"
        )
    try:
        os.makedirs(target, exist_ok=True)
    except OSError as e:
        raise LocalFileError(f"cannot create the model directory {target!r}: {e.strerror or e}") from e
    try:
        yield target
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    sync_tree(target)  # on the disk before save_model returns (casstore._files)


def log_prepared_model(
    handle: RunHandle,
    prepared: PreparedModel,
    name: str,
    *,
    metadata: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    registry: Registry | None = None,
    registered_model_name: str | None = None,
    params: dict[str, Any] | None = None,
    model_type: str | None = None,
    step: object = 0,
) -> ModelInfo:
    """Write the environment files and ``MLmodel``, log every file of the model directory
    under ``<name>/`` in the run, then the model entry; register it if asked. ``params``
    (MLflow 3's params of a logged model) are logged as params of the run, whose params
    are its models' params. ``model_type`` and ``step`` (MLflow 3's) are kept in the
    entry: the logged model's metrics are the run's at ``step``."""
    name = clean_artifact_path(name, "model name")
    if model_type is not None and not isinstance(model_type, str):
        raise InvalidInputError(f"log_model: model_type must be a string (such as 'classifier'), got "
                                f"{type(model_type).__name__} {model_type!r}")
    model_step = check_whole(step, "log_model: step")
    metadata = check_metadata(metadata)
    if tags is not None and (not isinstance(tags, dict) or not all(isinstance(k, str) for k in tags)):
        raise InvalidInputError(f"model tags must be a dict of str to str, got {tags!r}")
    tags = {k: str(v) for k, v in (tags or {}).items()}
    if params is not None and not isinstance(params, dict):
        raise InvalidInputError(f"model params must be a dict, got {type(params).__name__}")
    if params:
        handle.log_batch(params=params)
    d = prepared.model_dir
    created, model_uuid, ml_flavors = write_model_metadata(prepared, name, handle.run_id, metadata)

    files = _model_files(d)
    # files of the object store, never inline: the model entry names each by its digest alone
    bound = handle.log_files([(f"{name}/{rel}", full) for rel, full in files], inline=False)
    # pin each file's recipe, checked against the local file, so loads need not hash files whole
    objects = handle.store.objects
    refs = {rel: FileRef(rel, b.digest, b.size, objects.recipe_pin(b.digest, full)) for (rel, full), b in zip(files, bound)}
    entry = _entry(prepared, name, refs, handle.run_id, created, metadata, tags, model_type, model_step)
    digest = handle.add_model(name, entry.to_dict())
    version = None
    if registered_model_name is not None:
        if registry is None:
            from casstore.registry.store import Registry

            registry = Registry(handle.store.backend, handle.store.objects.layout)
        mv = registry.create_version(
            registered_model_name, digest, source=f"runs:/{handle.run_id}/{name}", run_id=handle.run_id
        )
        version = mv.version
    _context.note_logged_model(digest)
    return ModelInfo(
        model_uri=f"runs:/{handle.run_id}/{name}",
        model_digest=digest,
        run_id=handle.run_id,
        artifact_path=name,
        flavors=ml_flavors,
        signature=prepared.signature,
        utc_time_created=created,
        model_uuid=model_uuid,
        registered_model_version=version,
        requirements=list(prepared.requirements),
        metadata=metadata,
        saved_input_example_info=prepared.input_example_info,
        tags=dict(tags),
    )


def model_file(model_uri: str, rel: str, store: RunStore | None) -> tuple[str, ModelEntry, bytes | None]:
    """(model digest, entry, the bytes of its file ``rel``, verified; None if it has none)
    of a logged model, without fetching its other files."""
    from casstore.models.fetch import _verified_chunks, load_entry
    from casstore.models.uri import resolve_model_uri

    s = store or _context.current_store()
    digest = resolve_model_uri(str(model_uri).strip(), s).model_digest
    entry = load_entry(s, digest)
    ref = entry.files.get(rel)
    return digest, entry, b"".join(_verified_chunks(s.objects, ref)) if ref is not None else None


def written_mlmodel(model_uri: str, store: RunStore | None) -> tuple[str, ModelEntry, dict[str, Any]]:
    """(model digest, entry, its ``MLmodel`` file as read) of a logged model, verified."""
    import yaml

    digest, entry, data = model_file(model_uri, mlmodel.MLMODEL, store)
    written = yaml.safe_load(data) if data is not None else None
    return digest, entry, written if isinstance(written, dict) else {}


def get_model_info(model_uri: str, *, store: RunStore | None = None) -> ModelInfo:
    """The ``ModelInfo`` of a logged model (``runs:/``, ``models:/``, ``cas:`` URI), read from
    its verified entry without loading the model, as MLflow's ``mlflow.models.get_model_info``."""
    digest, entry, written = written_mlmodel(model_uri, store)
    return ModelInfo(
        model_uri=f"runs:/{entry.run_id}/{entry.name}" if entry.run_id else f"cas:{digest}",
        model_digest=digest,
        run_id=entry.run_id or "",
        artifact_path=entry.name,
        flavors=written.get("flavors") or entry.flavors,
        signature=ModelSignature.from_dict(entry.signature) if entry.signature else None,
        utc_time_created=entry.created,
        model_uuid=str(written.get("model_uuid", "")),
        requirements=list(entry.requirements),
        metadata=entry.metadata,
        saved_input_example_info=entry.input_example,
        tags=dict(entry.tags),
    )
