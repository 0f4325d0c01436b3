"""Model directories on the local disk (``save_model``'s, or MLflow's), and where loaded
models keep files past their load (their ``code/``, a custom model's artifacts).

A directory ``save_model`` wrote holds its model entry in :data:`ENTRY_FILE`: every file is
copied into a private directory and hashed on the way, and a file whose BLAKE3 or size is not
the one the entry lists is an :class:`IntegrityError`, raised before anything is unpickled.
The model digest is the entry's, as for a logged model. A directory MLflow wrote has no
entry: its ``MLmodel`` says how to load it, its files are taken as they are (as MLflow takes
them) and the digest is that of an entry built from them.

>>> is_model_uri("runs:/0123/model"), is_model_uri("./model")
(True, False)
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import yaml

from casstore._files import make_dirs, write_file
from casstore._paths import safe_destination
from casstore.exceptions import CorruptRecordError, IntegrityError, InvalidInputError, ObjectNotFoundError
from casstore.models.entry import FileRef, ModelEntry, entry_digest
from casstore.models.fetch import FetchedModel
from casstore.models.mlmodel import MLMODEL
from casstore.models.save import ENTRY_FILE
from casstore.objects.codec import unpack
from casstore.objects.digest import new_hasher

if TYPE_CHECKING:
    from casstore.runs import RunStore

__all__ = [
    "ENTRY_FILE", "is_model_uri", "local_model_dir", "fetch_local_dir", "fetch_model_or_dir", "kept_dir", "add_code_to_path",
    "artifacts_model_dir",
]

#: schemes whose URIs name a model in a store
_STORE_SCHEMES = ("runs:", "models:", "cas:")
#: MLflow's loader modules, and the casstore module that loads what they wrote
_MLFLOW_LOADERS = {"mlflow.sklearn": "casstore.sklearn", "mlflow.pyfunc.model": "casstore.pyfunc"}

_KEPT: list[str] = []


def _cleanup_kept() -> None:
    for d in _KEPT:
        shutil.rmtree(d, ignore_errors=True)


atexit.register(_cleanup_kept)


def kept_dir(prefix: str) -> str:
    """A new private directory kept until the process exits (a loaded model's files)."""
    d = tempfile.mkdtemp(prefix=prefix)
    _KEPT.append(d)
    return d


def is_model_uri(uri: object) -> bool:
    """Whether ``uri`` is a URI to resolve in a store (``runs:/``, ``models:/``, ``cas:``, or
    another scheme, refused there), not a local path or ``file://`` URI."""
    if not isinstance(uri, str):
        return False
    text = uri.strip()
    return text.startswith(_STORE_SCHEMES) or ("://" in text and not text.startswith("file://"))


def local_model_dir(uri: str | os.PathLike[str]) -> str:
    """The model directory a local path or ``file://`` URI names; refused if it holds no model."""
    text = os.fspath(uri)
    if text.startswith("file://"):
        text = text[len("file://"):]
    path = os.path.abspath(os.path.expanduser(text))
    if not os.path.isdir(path):
        raise ObjectNotFoundError(
            f"no model directory at {path!r}; give a directory save_model wrote, or a model URI: "
            "runs:/<run_id>/<name>, models:/<name>/<version>, models:/<name>@<alias> or cas:<model_digest>"
        )
    if not os.path.isfile(os.path.join(path, ENTRY_FILE)) and not os.path.isfile(os.path.join(path, MLMODEL)):
        raise ObjectNotFoundError(f"{path!r} is not a model directory: it has neither {ENTRY_FILE} nor {MLMODEL}")
    return path


def _copy_hashed(src: str, dst: str, durable: bool | None) -> tuple[str, int]:
    """Copy ``src`` to ``dst`` (:func:`casstore._files.write_file`); its BLAKE3 and size."""
    h = new_hasher()
    size = 0

    def blocks() -> Iterator[bytes]:
        nonlocal size
        with open(src, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
                size += len(block)
                yield block

    write_file(blocks(), dst, durable=durable)
    return h.hexdigest(), size


def _entry_of_mlflow_dir(path: str, files: dict[str, FileRef]) -> dict[str, Any]:
    """An entry for a directory MLflow wrote, from its ``MLmodel``."""
    try:
        with open(os.path.join(path, MLMODEL), encoding="utf-8") as f:
            ml = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise CorruptRecordError(f"cannot read {MLMODEL} of {path!r}: {e}") from e
    flavors = ml.get("flavors") if isinstance(ml, dict) else None
    if not isinstance(flavors, dict):
        raise CorruptRecordError(f"{MLMODEL} of {path!r} lists no flavors")
    flavors = {str(k): dict(v) for k, v in flavors.items() if isinstance(v, dict)}
    pf = flavors.get("python_function")
    if pf is not None:
        loader = pf.get("loader_module")
        if loader not in _MLFLOW_LOADERS:
            raise InvalidInputError(
                f"the model at {path!r} was written by MLflow's {loader!r}; casstore loads sklearn models and "
                "custom python models (mlflow.sklearn, mlflow.pyfunc.model)"
            )
        pf["loader_module"] = _MLFLOW_LOADERS[loader]
    return ModelEntry(
        name=os.path.basename(path), flavors=flavors, files=files, run_id=ml.get("run_id"),
        created=str(ml.get("utc_time_created") or ""), signature=ml.get("signature"),
        input_example=ml.get("saved_input_example_info"),
    ).to_dict()


def fetch_local_dir(uri: str | os.PathLike[str], dest: str | None = None, *, scratch: bool = False) -> FetchedModel:
    """Copy a local model directory into ``dest`` (default: a new private directory),
    checking every file against the directory's model entry where it has one. Files
    copied into a ``dest`` are synced unless it is ``scratch`` (a private directory)."""
    path = local_model_dir(uri)
    private = dest is None
    target = tempfile.mkdtemp(prefix="casstore-model-") if dest is None else os.fspath(dest)
    durable = False if private or scratch else None
    try:
        make_dirs(target, durable=durable)
        entry_path = os.path.join(path, ENTRY_FILE)
        if os.path.isfile(entry_path):
            with open(entry_path, "rb") as f:
                raw = unpack(f.read(), f"model entry {entry_path}")
            entry = ModelEntry.from_dict(raw, f"model entry {entry_path}")
            for rel, ref in sorted(entry.files.items()):
                src = os.path.join(path, *rel.split("/"))
                if not os.path.isfile(src):
                    raise IntegrityError(f"model file {rel!r} of {path!r}", ref.digest, "(missing)", "the file is gone")
                digest, size = _copy_hashed(src, safe_destination(target, rel), durable)
                if digest != ref.digest or size != ref.size:
                    raise IntegrityError(
                        f"model file {rel!r} of {path!r}", ref.digest, digest, "changed since save_model wrote it"
                    )
            model_digest = entry_digest(raw)
        else:
            refs = {}
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames.sort()
                for fn in sorted(filenames):
                    rel = os.path.relpath(os.path.join(dirpath, fn), path).replace(os.sep, "/")
                    refs[rel] = FileRef(rel, *_copy_hashed(os.path.join(dirpath, fn), safe_destination(target, rel), durable))
            raw = _entry_of_mlflow_dir(path, refs)
            entry = ModelEntry.from_dict(raw, f"model directory {path}")
            model_digest = entry_digest(raw)
    except BaseException:
        if private:
            shutil.rmtree(target, ignore_errors=True)
        raise
    return FetchedModel(target, entry, model_digest)


def add_code_to_path(fetched: FetchedModel, code: object) -> None:
    """Put the model's verified ``code/`` on ``sys.path`` (kept until the process exits)."""
    if not code:
        return
    if code != "code" or not any(p.startswith("code/") for p in fetched.entry.files):
        raise CorruptRecordError(f"model {fetched.entry.name!r} names code directory {code!r} that it does not hold")
    keep = kept_dir("casstore-code-")
    for rel in sorted(p for p in fetched.entry.files if p.startswith("code/")):
        target = safe_destination(keep, rel[len("code/") :])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with fetched.take(rel) as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out)
    if keep not in sys.path:
        sys.path.insert(0, keep)


def fetch_model_or_dir(model_uri: str | os.PathLike[str], store: RunStore | None = None, dest: str | None = None) -> FetchedModel:
    """Fetch, verified, the model a model URI names (in ``store``, default: the current
    tracking store) or the model directory a local path names."""
    if is_model_uri(model_uri):
        from casstore.models import _context
        from casstore.models.fetch import fetch_model_uri

        s = store or _context.current_store()
        try:
            return fetch_model_uri(str(model_uri).strip(), s, dest=dest)
        except ObjectNotFoundError:
            model_uri = artifacts_model_dir(str(model_uri).strip(), s) or ""
            if not model_uri:
                raise
    return fetch_local_dir(model_uri, dest)


def artifacts_model_dir(model_uri: str, store: RunStore) -> str | None:
    """For a ``runs:/<run_id>/<path>`` whose path is no logged model but a directory of the
    run's artifacts holding an ``MLmodel`` (a model written with ``save_model`` and logged
    with ``log_artifacts``, as MLflow scripts do): those files, each verified, downloaded to
    a private directory, to be loaded as a local model directory. Else ``None``."""
    from casstore.models.uri import parse_model_uri

    p = parse_model_uri(model_uri)
    if p.kind != "runs" or p.run_id is None or not p.path:
        return None
    view = store.get_run(p.run_id)
    prefix = p.path + "/"
    if prefix + MLMODEL not in view.artifacts:
        return None
    local = kept_dir("casstore-model-")
    for path, entry in sorted(view.artifacts.items()):
        if path.startswith(prefix):
            store.artifact_to_file(p.run_id, entry, safe_destination(local, path[len(prefix):]), durable=False)
    return local
