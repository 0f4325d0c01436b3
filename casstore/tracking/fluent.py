"""The fluent tracking API: MLflow's ``start_run`` / ``log_*`` functions.

Each thread has its own stack of active runs (as in MLflow). Logging with no
active run starts one, which ends (``FINISHED``) when the process exits, as in
MLflow. ``get_run()`` without an id means the active run, else the run this process
ended last (MLflow's ``last_active_run``).
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Sequence
from typing import Any

from casstore.exceptions import InvalidInputError, ObjectNotFoundError, RunStateError
from casstore.runs import DEFAULT_EXPERIMENT_ID, Experiment
from casstore.runs.layout import check_run_id
from casstore.tracking import uri
from casstore.tracking.client import Client
from casstore.tracking.entities import ActiveRun, FileInfo, Metric, Param, Run, RunStatus, RunTag, ViewType

__all__ = [
    "set_experiment",
    "get_experiment",
    "get_experiment_by_name",
    "create_experiment",
    "search_experiments",
    "start_run",
    "end_run",
    "active_run",
    "last_active_run",
    "get_run",
    "delete_run",
    "log_param",
    "log_params",
    "log_metric",
    "log_metrics",
    "set_tag",
    "set_tags",
    "get_metric_history",
    "log_artifact",
    "log_artifacts",
    "log_text",
    "log_dict",
    "log_figure",
    "log_image",
    "list_artifacts",
    "get_artifact_uri",
    "search_runs",
    "active_client",
]

EXPERIMENT_NAME_ENV = "CASSTORE_EXPERIMENT_NAME"
EXPERIMENT_ID_ENV = "CASSTORE_EXPERIMENT_ID"

_local = threading.local()
_state_lock = threading.Lock()
#: every run started by this process and not yet ended: run_id -> (run, client)
_open_runs: dict[str, tuple[ActiveRun, Client]] = {}
#: the run this process ended last (by end_run or leaving its ``with`` block)
_last_active: tuple[str, Client] | None = None
#: ("name", name) or ("id", experiment_id), as set by set_experiment
_active_experiment: tuple[str, str] | None = None


def _stack() -> list[tuple[ActiveRun, Client]]:
    st: list[tuple[ActiveRun, Client]] | None = getattr(_local, "stack", None)
    if st is None:
        st = _local.stack = []
    return st


def _client() -> Client:
    return Client(uri.get_tracking_uri())


def active_client() -> Client:
    """The client of the active run if there is one, else one for the current tracking URI."""
    st = _stack()
    return st[-1][1] if st else _client()


# ---- experiments ----------------------------------------------------------------------------


def set_experiment(experiment_name: str | None = None, experiment_id: str | None = None) -> Experiment:
    """Make an experiment active (created if it does not exist, when given by name)."""
    global _active_experiment
    if (experiment_name is None) == (experiment_id is None):
        raise InvalidInputError("set_experiment takes exactly one of experiment_name or experiment_id")
    client = _client()
    if experiment_name is not None:
        exp_id = client.store.get_or_create_experiment(experiment_name)
        _active_experiment = ("name", experiment_name)
    else:
        exp_id = str(experiment_id)
        client.get_experiment(exp_id)  # raises if there is none
        _active_experiment = ("id", exp_id)
    return client.get_experiment(exp_id)


def _active_experiment_id(client: Client) -> str:
    chosen = _active_experiment
    if chosen is None:
        if os.environ.get(EXPERIMENT_ID_ENV):
            chosen = ("id", os.environ[EXPERIMENT_ID_ENV])
        elif os.environ.get(EXPERIMENT_NAME_ENV):
            chosen = ("name", os.environ[EXPERIMENT_NAME_ENV])
    if chosen is None:
        return DEFAULT_EXPERIMENT_ID
    kind, value = chosen
    return client.store.get_or_create_experiment(value) if kind == "name" else value


def get_experiment(experiment_id: str) -> Experiment:
    return _client().get_experiment(experiment_id)


def get_experiment_by_name(name: str) -> Experiment | None:
    return _client().get_experiment_by_name(name)


def create_experiment(name: str, artifact_location: str | None = None, tags: dict[str, Any] | None = None) -> str:
    return _client().create_experiment(name, artifact_location, tags)


def search_experiments(
    view_type: int = ViewType.ACTIVE_ONLY,
    max_results: int | None = None,
    filter_string: str | None = None,
    order_by: list[str] | None = None,
) -> list[Experiment]:
    return _client().search_experiments(view_type, max_results, filter_string, order_by)


# ---- runs ---------------------------------------------------------------------------------------


def start_run(
    run_id: str | None = None,
    experiment_id: str | None = None,
    run_name: str | None = None,
    nested: bool = False,
    parent_run_id: str | None = None,
    tags: dict[str, Any] | None = None,
    description: str | None = None,
    log_system_metrics: bool | None = None,
) -> ActiveRun:
    """Start a new run, or resume an open one by ``run_id``; use it as a context manager.

    Leaving the ``with`` block ends the run: ``FINISHED``, or ``FAILED`` if an exception
    escaped it (``KILLED`` on Ctrl-C). A sealed run cannot be resumed.
    """
    st = _stack()
    if st and not nested:
        raise RunStateError(
            f"run {st[-1][0].info.run_id} is already active. End it with end_run() first, "
            "or start a nested run with start_run(nested=True)."
        )
    client = _client()
    tags = {k: str(v) for k, v in (tags or {}).items()}
    parent = parent_run_id or (st[-1][0].info.run_id if st and nested else None)
    if parent:
        tags["mlflow.parentRunId"] = parent
    if description is not None:
        tags["mlflow.note.content"] = str(description)
    if run_id is not None:
        run = _resume(client, check_run_id(run_id), experiment_id, run_name, tags)
    else:
        exp_id = str(experiment_id) if experiment_id is not None else _active_experiment_id(client)
        run = client.create_run(exp_id, tags=tags, run_name=run_name)
    active = ActiveRun(run)
    st.append((active, client))
    with _state_lock:
        _open_runs[run.info.run_id] = (active, client)
    return active


def _resume(client: Client, run_id: str, experiment_id: str | None, run_name: str | None, tags: dict[str, str]) -> Run:
    view = client.store.get_run(run_id)
    if view.sealed:
        raise RunStateError(
            f"run {run_id} is ended and sealed (status {view.status}); it cannot be resumed. "
            "Start a new run to log more."
        )
    if experiment_id is not None and str(experiment_id) != view.experiment_id:
        raise InvalidInputError(
            f"run {run_id} belongs to experiment {view.experiment_id}, not {experiment_id}"
        )
    client._handle(run_id)
    if run_name is not None:
        tags["mlflow.runName"] = run_name
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
    return client.get_run(run_id)


def end_run(status: str = RunStatus.FINISHED) -> None:
    """End and seal this thread's active run (no-op without one). ``status`` is one of
    ``FINISHED``, ``FAILED`` and ``KILLED``; another is refused with the run still active."""
    if not RunStatus.is_terminated(status):
        raise InvalidInputError(
            f"end_run status {status!r} is not a status a run ends with; use one of "
            f"{RunStatus.FINISHED!r}, {RunStatus.FAILED!r} or {RunStatus.KILLED!r}"
        )
    st = _stack()
    if st:
        _end_run_of(st[-1][0].info.run_id, status)


def _end_run_of(run_id: str, status: str) -> None:
    global _last_active
    st = _stack()
    entry = next((e for e in st if e[0].info.run_id == run_id), None)
    with _state_lock:
        found = _open_runs.pop(run_id, None)
        pair = entry or found
        if pair is not None:
            _last_active = (run_id, pair[1])
    if entry is not None:
        st.remove(entry)
    if pair is None:
        return  # already ended
    pair[1].set_terminated(run_id, status)


def active_run() -> ActiveRun | None:
    """This thread's active run, or ``None``."""
    st = _stack()
    return st[-1][0] if st else None


def last_active_run() -> Run | None:
    """This thread's active run if there is one, else the run this process ended last
    (``None`` if none has ended), freshly read. As MLflow: after a parent run with a nested
    child ends, the parent, which ended after the child."""
    current = _current_or_last()
    return None if current is None else current[1].get_run(current[0])


def get_run(run_id: str | None = None) -> Run:
    """A run by id (in the current tracking store); without an id, the active run, else the
    run this process ended last (see :func:`last_active_run`)."""
    if run_id is not None:
        return _client().get_run(run_id)
    rid, client = _current_run()
    return client.get_run(rid)


def _current_or_last() -> tuple[str, Client] | None:
    """This thread's active run, else the run this process ended last (None if neither),
    with the client of its store."""
    st = _stack()
    if st:
        return st[-1][0].info.run_id, st[-1][1]
    return _last_active


def _current_run() -> tuple[str, Client]:
    """:func:`_current_or_last`, which must be a run."""
    current = _current_or_last()
    if current is None:
        raise RunStateError("there is no active run and no run has ended in this process; pass a run id")
    return current


def delete_run(run_id: str) -> None:
    _client().delete_run(run_id)


def _run_for_write(run_id: str | None = None) -> tuple[str, Client]:
    if run_id is not None:
        return check_run_id(run_id), _client()
    st = _stack()
    if not st:
        start_run()
    return st[-1][0].info.run_id, st[-1][1]


# ---- params, metrics, tags --------------------------------------------------------------------


def log_param(key: str, value: Any, synchronous: bool | None = None) -> Any:
    """Record a param of the active run; the same value again is a no-op, another value raises."""
    run_id, client = _run_for_write()
    return client.log_param(run_id, key, value)


def log_params(params: dict[str, Any], synchronous: bool | None = None, run_id: str | None = None) -> None:
    rid, client = _run_for_write(run_id)
    client.log_batch(rid, params=[Param(k, str(v)) for k, v in params.items()])


def log_metric(
    key: str, value: float, step: int | None = None, synchronous: bool | None = None,
    timestamp: int | None = None, run_id: str | None = None,
) -> None:
    """Record a metric value (buffered and written in batches; nothing is lost at the run's end or exit)."""
    rid, client = _run_for_write(run_id)
    client.log_metric(rid, key, value, timestamp, step)


def log_metrics(
    metrics: dict[str, float], step: int | None = None, synchronous: bool | None = None,
    run_id: str | None = None, timestamp: int | None = None,
) -> None:
    rid, client = _run_for_write(run_id)
    for k, v in metrics.items():
        client.log_metric(rid, k, v, timestamp, step)


def set_tag(key: str, value: Any, synchronous: bool | None = None) -> None:
    run_id, client = _run_for_write()
    client.set_tag(run_id, key, value)


def set_tags(tags: dict[str, Any], synchronous: bool | None = None) -> None:
    run_id, client = _run_for_write()
    client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def get_metric_history(run_id: str, key: str) -> list[Metric]:
    return _client().get_metric_history(run_id, key)


# ---- artifacts --------------------------------------------------------------------------------


def log_artifact(local_path: str | os.PathLike[str], artifact_path: str | None = None, run_id: str | None = None) -> None:
    """Log a file as ``<artifact_path>/<name>`` (a directory as ``<artifact_path>/<dirname>/...``)."""
    rid, client = _run_for_write(run_id)
    client.log_artifact(rid, local_path, artifact_path)


def log_artifacts(local_dir: str | os.PathLike[str], artifact_path: str | None = None, run_id: str | None = None) -> None:
    """Log every file under ``local_dir`` under ``artifact_path`` (one durability barrier for all)."""
    rid, client = _run_for_write(run_id)
    client.log_artifacts(rid, local_dir, artifact_path)


def log_text(text: str, artifact_file: str, run_id: str | None = None) -> None:
    rid, client = _run_for_write(run_id)
    client.log_text(rid, text, artifact_file)


def log_dict(dictionary: Any, artifact_file: str, run_id: str | None = None) -> None:
    """Log a dict as JSON, or as YAML when ``artifact_file`` ends in ``.yaml``/``.yml``."""
    rid, client = _run_for_write(run_id)
    client.log_dict(rid, dictionary, artifact_file)


def log_figure(
    figure: Any, artifact_file: str, *, save_kwargs: dict[str, Any] | None = None, run_id: str | None = None
) -> None:
    """Log a matplotlib (or plotly) figure in the format its file suffix names."""
    rid, client = _run_for_write(run_id)
    client.log_figure(rid, figure, artifact_file, save_kwargs=save_kwargs)


def log_image(
    image: Any, artifact_file: str | None = None, key: str | None = None, step: int | None = None,
    timestamp: int | None = None, synchronous: bool | None = None, *, run_id: str | None = None,
) -> None:
    """Log a numpy array or PIL image (Pillow needed): as the file ``artifact_file``, or, with
    ``key`` (and ``step``, ``timestamp``), as one image of a series under ``images/`` (as MLflow 3).
    Give exactly one of ``artifact_file`` and ``key``."""
    rid, client = _run_for_write(run_id)
    client.log_image(rid, image, artifact_file, key, step, timestamp, synchronous)


def list_artifacts(run_id: str | None = None, path: str | None = None) -> list[FileInfo]:
    """Artifacts directly under ``path`` of a run (default: the active or last run)."""
    if run_id is None:
        rid, client = _current_run()
        return client.list_artifacts(rid, path)
    return _client().list_artifacts(run_id, path)


def get_artifact_uri(artifact_path: str | None = None) -> str:
    """``runs:/<active run id>/<artifact_path>``."""
    run_id, _ = _run_for_write()
    return uri.runs_uri(run_id, artifact_path)


# ---- search ----------------------------------------------------------------------------------------


def search_runs(
    experiment_ids: Sequence[str] | str | None = None,
    filter_string: str = "",
    run_view_type: int = ViewType.ACTIVE_ONLY,
    max_results: int | None = None,
    order_by: list[str] | None = None,
    output_format: str = "list",
    search_all_experiments: bool = False,
    experiment_names: list[str] | None = None,
) -> Any:
    """Runs matching MLflow's filter grammar, as a list of ``Run`` or (``output_format="pandas"``) a DataFrame.

    Without ``experiment_ids`` or ``experiment_names``, searches the active experiment
    (all experiments with ``search_all_experiments=True``). Without ``max_results``, every
    matching run (as MLflow's), else at most that many.
    """
    if output_format not in ("list", "pandas"):
        raise InvalidInputError(f"output_format must be 'list' or 'pandas', got {output_format!r}")
    client = _client()
    ids: list[str] | None
    if experiment_names:
        ids = []
        for name in experiment_names:
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise ObjectNotFoundError(f"no experiment named {name!r} in store {client.store.url}")
            ids.append(exp.experiment_id)
    elif experiment_ids is not None:
        ids = [experiment_ids] if isinstance(experiment_ids, str) else [str(i) for i in experiment_ids]
    elif search_all_experiments:
        ids = None
    else:
        ids = [_active_experiment_id(client)]
    runs = client.search_runs(ids, filter_string, run_view_type, max_results, order_by)
    if output_format == "pandas":
        return _to_frame(runs)
    return runs


def _to_frame(runs: list[Run]) -> Any:
    try:
        import pandas as pd
    except ImportError as e:
        raise InvalidInputError("output_format='pandas' needs pandas: pip install 'casstore[pandas]'") from e
    base = ["run_id", "experiment_id", "status", "artifact_uri", "start_time", "end_time", "digest"]
    rows = []
    for r in runs:
        row: dict[str, Any] = {
            "run_id": r.info.run_id, "experiment_id": r.info.experiment_id, "status": r.info.status,
            "artifact_uri": r.info.artifact_uri,
            "start_time": pd.to_datetime(r.info.start_time, unit="ms", utc=True),
            "end_time": pd.to_datetime(r.info.end_time, unit="ms", utc=True) if r.info.end_time else pd.NaT,
            "digest": r.info.digest,
        }
        row.update({f"metrics.{k}": v for k, v in r.data.metrics.items()})
        row.update({f"params.{k}": v for k, v in r.data.params.items()})
        row.update({f"tags.{k}": v for k, v in r.data.tags.items()})
        rows.append(row)
    return pd.DataFrame(rows, columns=None if rows else base)


@atexit.register
def _end_runs_at_exit() -> None:
    """End (seal) the runs this process left open, as MLflow does at exit."""
    with _state_lock:
        pending = list(_open_runs.items())
        _open_runs.clear()
    for run_id, (_, client) in pending:
        try:
            client.set_terminated(run_id, RunStatus.FINISHED)
        except Exception as e:  # exit must go on; the run stays open and can be resumed
            import sys

            sys.stderr.write(f"casstore: could not end run {run_id} at exit: {type(e).__name__}: {e}\n")


def _reset() -> None:
    """Forget active runs and the active experiment without ending anything (tests)."""
    global _last_active, _active_experiment
    _local.stack = []
    with _state_lock:
        _open_runs.clear()
    _last_active = None
    _active_experiment = None


def _after_fork_in_child() -> None:
    # a forked child may log to the parent's active run, but must not seal it at its exit
    global _state_lock
    _state_lock = threading.Lock()
    _open_runs.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
