"""Moving MLflow runs and artifact directories into casstore.

Three entry points, from the most general to the simplest:

- :func:`import_mlflow_run` / :func:`import_mlflow_experiment` read runs through
  MLflow's own client (any MLflow backend: ``sqlite:///mlflow.db``, a tracking
  server, a ``./mlruns`` file store) and write each one as a sealed casstore run
  with the same name, start time, status, params, tags, full metric history and
  artifacts, including the models MLflow 3 keeps outside the run's artifact
  directory. Needs MLflow installed (``pip install mlflow``).
- :func:`import_artifact_dir` logs a plain local directory (an MLflow artifact
  directory copied out of ``mlruns/``, or anything downloaded with
  ``mlflow artifacts download``) as one sealed run. No MLflow needed.

In both, every directory holding an ``MLmodel`` file with an ``sklearn`` flavor also
becomes a casstore model (its files byte for byte, plus a model entry), so
``casstore.sklearn.load_model("runs:/<run_id>/<dir>")`` loads it verified. Models
of other flavors are kept as plain artifacts: MLflow's loaders read them after a
download.

An import is tagged ``casstore.import.source``; importing the same MLflow run again
returns the run already imported (and completes one an interrupted import left open).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any


from casstore.exceptions import InvalidInputError, LocalFileError, RunStateError
from casstore.runs import DEFAULT_EXPERIMENT_NAME, RunHandle, RunStore
from casstore.runs.records import ArtifactEntry, point_key
from casstore.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

if TYPE_CHECKING:
    from casstore.objects import ObjectStore

__all__ = ["ImportedRun", "SOURCE_TAG", "import_artifact_dir", "import_mlflow_run", "import_mlflow_experiment"]

#: the tag naming where an imported run came from: ``mlflow:<run id>`` or ``dir:<path>``
#: the tag by which MLflow names a nested run's parent
PARENT_TAG = MLFLOW_PARENT_RUN_ID
SOURCE_TAG = "casstore.import.source"
_MLFLOW_URI_TAG = "casstore.import.mlflow_tracking_uri"
_ENDED = ("FINISHED", "FAILED", "KILLED")


@dataclass(frozen=True)
class ImportedRun:
    """One imported run: where it came from, the casstore run and its digest, what it holds."""

    source: str
    run_id: str
    digest: str | None
    artifacts: int
    bytes: int
    models: tuple[str, ...] = ()
    already_imported: bool = False


def _store(tracking_uri: str | os.PathLike[str] | None) -> RunStore:
    from casstore.tracking.uri import get_store

    return get_store(tracking_uri)


# ---- models ----------------------------------------------------------------------------------


def _model_entry(
    model_dir: str, name: str, run_id: str, files: dict[str, ArtifactEntry], objects: ObjectStore
) -> dict[str, Any] | None:
    """A casstore model entry for an MLflow model directory with an ``sklearn`` flavor, or
    None for another flavor. ``files`` maps each path inside the directory to its binding;
    each file's recipe is pinned (checked against the local file, as ``log_model`` does)."""
    from casstore.models.entry import FileRef
    from casstore.models.mlmodel import entry_from_mlmodel

    def ref(p: str) -> FileRef:
        e = files[p]
        return FileRef(p, e.digest, e.size, objects.recipe_pin(e.digest, os.path.join(model_dir, *p.split("/"))))

    entry = entry_from_mlmodel(model_dir, name, files, ref, run_id)
    return entry.to_dict() if entry is not None else None


def _model_dirs(root: str) -> list[str]:
    """Artifact paths (relative to ``root``, '/'-separated) of directories holding an MLmodel."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        if "MLmodel" in filenames:
            rel = os.path.relpath(dirpath, root)
            out.append("" if rel == "." else rel.replace(os.sep, "/"))
    return out


def _log_tree(handle: RunHandle, root: str) -> tuple[list[ArtifactEntry], tuple[str, ...]]:
    """Log every file under ``root`` at its relative path, then add a model for every
    sklearn MLmodel directory. Returns the bindings and the model names."""
    from casstore.tracking._artifacts import walk_dir

    model_dirs = _model_dirs(root)
    prefixes = tuple(rel + "/" if rel else "" for rel in model_dirs)
    items = walk_dir(root, "")
    # a model's files are files of the object store (its entry names them by digest); the
    # other small files may be held in their run records
    entries = handle.log_files([it for it in items if it[0].startswith(prefixes)], inline=False)
    entries += handle.log_files([it for it in items if not it[0].startswith(prefixes)])
    by_path = {e.path: e for e in entries}
    models = []
    for rel in model_dirs:
        name = rel or "model"
        prefix = rel + "/" if rel else ""
        files = {p[len(prefix):]: e for p, e in by_path.items() if p.startswith(prefix)}
        model_dir = os.path.join(root, *rel.split("/")) if rel else root
        entry = _model_entry(model_dir, name, handle.run_id, files, handle.store.objects)
        if entry is not None:
            handle.add_model(name, entry)
            models.append(name)
    return entries, tuple(models)


def _find_imported(store: RunStore, experiment_id: str, source: str) -> str | None:
    for view in store.search_runs([experiment_id], deleted=None):
        if view.tags.get(SOURCE_TAG) == source and not view.deleted:
            return view.run_id
    return None


def _finish(store: RunStore, handle: RunHandle, source: str, root: str, status: str,
            end_time: int | None = None) -> ImportedRun:
    entries, models = _log_tree(handle, root)  # on failure the run stays open: a new import resumes it
    digest = handle.end(status, end_time)
    view = store.get_run(handle.run_id)
    return ImportedRun(source, handle.run_id, digest, len(view.artifacts),
                       sum(a.size for a in view.artifacts.values()), models)


def _summary(store: RunStore, source: str, run_id: str) -> ImportedRun:
    view = store.get_run(run_id)
    return ImportedRun(source, run_id, view.digest, len(view.artifacts), sum(a.size for a in view.artifacts.values()),
                       tuple(sorted(view.models)), already_imported=True)


# ---- a plain directory ---------------------------------------------------------------------


def import_artifact_dir(
    local_dir: str | os.PathLike[str],
    *,
    experiment: str | None = None,
    run_name: str | None = None,
    params: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    tracking_uri: str | os.PathLike[str] | None = None,
) -> ImportedRun:
    """Log every file under ``local_dir`` at its relative path as one new, sealed run.

    Sub-directories holding an MLflow ``MLmodel`` with an ``sklearn`` flavor also become
    casstore models under their directory name (``model`` for ``local_dir`` itself).

    >>> import os, tempfile, casstore.migrate
    >>> d = tempfile.mkdtemp()
    >>> with open(os.path.join(d, "weights.bin"), "wb") as f:
    ...     _ = f.write(b"w" * 1000)
    >>> run = casstore.migrate.import_artifact_dir(d, tracking_uri="memory://doc-migrate")
    >>> (run.artifacts, run.bytes, run.digest is not None)
    (1, 1000, True)
    """
    root = os.path.abspath(os.fspath(local_dir))
    if not os.path.isdir(root):
        raise LocalFileError(f"cannot import {root!r}: it is not a directory")
    store = _store(tracking_uri)
    exp_id = store.get_or_create_experiment(experiment or DEFAULT_EXPERIMENT_NAME)
    source = f"dir:{root}"
    handle = store.create_run(exp_id, run_name=run_name or os.path.basename(root),
                              tags={**(tags or {}), SOURCE_TAG: source})
    try:
        for k, v in (params or {}).items():
            handle.log_param(k, str(v))
        return _finish(store, handle, source, root, "FINISHED")
    except BaseException:
        handle.end("FAILED")
        raise


# ---- MLflow runs -----------------------------------------------------------------------------


def _mlflow_client(mlflow_tracking_uri: str | None) -> Any:
    try:
        import mlflow
    except ImportError as e:
        raise InvalidInputError(
            "importing from MLflow reads the runs with MLflow's own client: pip install mlflow "
            "(or copy the artifact directory out and use import_artifact_dir, which needs no MLflow)"
        ) from e
    return mlflow.MlflowClient(tracking_uri=mlflow_tracking_uri)


def _download_logged_models(client: Any, run: Any, dest: str) -> None:
    """MLflow 3 keeps models logged in a run outside its artifact directory: fetch each
    into ``dest/<model name>/`` (a name the run's own artifacts already use is skipped)."""
    search = getattr(client, "search_logged_models", None)
    if search is None:  # MLflow 2: models are inside the run's artifacts
        return
    import mlflow.artifacts

    models = search(experiment_ids=[run.info.experiment_id],
                    filter_string=f"source_run_id = '{run.info.run_id}'")
    for m in models:
        target = os.path.join(dest, m.name)
        if os.path.exists(target):
            continue
        staging = tempfile.mkdtemp(dir=dest, prefix=".model-")
        got = mlflow.artifacts.download_artifacts(artifact_uri=m.artifact_location, dst_path=staging,
                                                  tracking_uri=client.tracking_uri)
        os.replace(got, target)  # MLflow puts the directory inside dst_path under its own name
        shutil.rmtree(staging, ignore_errors=True)


def import_mlflow_run(
    mlflow_run_id: str,
    *,
    mlflow_tracking_uri: str | None = None,
    experiment: str | None = None,
    tracking_uri: str | os.PathLike[str] | None = None,
) -> ImportedRun:
    """Copy one ended MLflow run into casstore as a sealed run.

    ``mlflow_tracking_uri`` is where MLflow keeps the run (default: MLflow's own default
    and ``MLFLOW_TRACKING_URI``); ``experiment`` the casstore experiment (default: the
    MLflow experiment's name); ``tracking_uri`` the casstore store (default: the current
    one). Name, start time, status, params, tags, every metric point (value, step,
    timestamp), artifacts and logged models are copied; the new run gets its own id and
    is tagged ``casstore.import.source = mlflow:<run id>``. A run already imported into
    that experiment is returned as it is (``already_imported=True``). A child run's
    parent is imported first (or found, if it was), and the child's ``mlflow.parentRunId``
    names the parent's new id.
    """
    client = _mlflow_client(mlflow_tracking_uri)
    run = client.get_run(mlflow_run_id)
    status = str(run.info.status)
    if status not in _ENDED:
        raise RunStateError(
            f"MLflow run {mlflow_run_id} is {status}; only ended runs (FINISHED, FAILED, KILLED) are imported, "
            "because a casstore run is sealed when it is imported. Import it once it has ended."
        )
    store = _store(tracking_uri)
    exp_name = experiment or client.get_experiment(run.info.experiment_id).name
    exp_id = store.get_or_create_experiment(exp_name)
    source = f"mlflow:{mlflow_run_id}"
    found = _find_imported(store, exp_id, source)
    have: Counter[tuple[str, str, int, int]] = Counter()
    if found is not None:
        view = store.get_run(found)
        if view.sealed:
            return _summary(store, source, found)
        # an interrupted import (its tags came with the run): it may have stopped anywhere, so what
        # it did not copy is copied now; params bind again as they are, and only the metric points
        # the run lacks are logged
        handle = store.open_run(found)
        have.update(point_key(p) for p in store.get_run(found).points)
    else:
        tags = {k: str(v) for k, v in run.data.tags.items()}
        if tags.get(PARENT_TAG):
            tags[PARENT_TAG] = _imported_parent(tags[PARENT_TAG], mlflow_run_id, mlflow_tracking_uri, experiment, tracking_uri)
        tags.update({SOURCE_TAG: source, _MLFLOW_URI_TAG: str(client.tracking_uri)})
        handle = store.create_run(exp_id, run_name=run.info.run_name, tags=tags, start_time=int(run.info.start_time))
    if run.data.params:
        handle.log_batch(params={k: str(v) for k, v in run.data.params.items()})
    for key in sorted(run.data.metrics):
        for m in client.get_metric_history(mlflow_run_id, key):
            point = (m.key, float(m.value), int(m.step or 0), int(m.timestamp))
            if have[point_key(point)] > 0:  # copied by the interrupted import
                have[point_key(point)] -= 1
                continue
            handle.log_metric(*point)
    handle.flush_metrics()
    with tempfile.TemporaryDirectory(prefix="casstore-import-") as tmp:
        root = os.path.join(tmp, "artifacts")
        os.makedirs(root)
        if client.list_artifacts(mlflow_run_id):
            client.download_artifacts(mlflow_run_id, "", root)
        _download_logged_models(client, run, root)
        end_time = run.info.end_time
        return _finish(store, handle, source, root, status, int(end_time) if end_time is not None else None)


def _imported_parent(parent: str, child: str, mlflow_tracking_uri: str | None, experiment: str | None,
                     tracking_uri: str | os.PathLike[str] | None) -> str:
    """The casstore id of the MLflow run ``parent`` of ``child``, importing it if it was not."""
    try:
        return import_mlflow_run(parent, mlflow_tracking_uri=mlflow_tracking_uri, experiment=experiment,
                                 tracking_uri=tracking_uri).run_id
    except RunStateError as e:
        raise RunStateError(f"cannot import MLflow run {child}: its parent run cannot be imported yet: {e}") from e


def import_mlflow_experiment(
    name: str,
    *,
    mlflow_tracking_uri: str | None = None,
    experiment: str | None = None,
    tracking_uri: str | os.PathLike[str] | None = None,
) -> list[ImportedRun]:
    """Import every ended run of the MLflow experiment ``name`` (oldest first); runs still
    going are skipped. Safe to run again: runs already imported are returned as they are."""
    client = _mlflow_client(mlflow_tracking_uri)
    exp = client.get_experiment_by_name(name)
    if exp is None:
        raise InvalidInputError(f"MLflow has no experiment named {name!r} at {client.tracking_uri}")
    runs: Iterable[Any] = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"], max_results=50000)
    out = []
    for r in runs:
        if r.info.status not in _ENDED:
            continue
        out.append(import_mlflow_run(r.info.run_id, mlflow_tracking_uri=mlflow_tracking_uri,
                                     experiment=experiment or name, tracking_uri=tracking_uri))
    return out
