"""The fluent tracking API: MLflow's ``start_run`` / ``log_*`` functions.

Each thread has its own stack of active runs (as in MLflow). Logging with no
active run starts one, which ends (``FINISHED``) when the process exits, as in
MLflow. ``get_run()`` without an id means the active run, else the run this process
ended last (MLflow's ``last_active_run``).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from casstore.exceptions import InvalidInputError, RunStateError
from casstore.runs import DEFAULT_EXPERIMENT_ID, Experiment
from casstore.runs.layout import check_run_id
from casstore.tracking import uri
from casstore.tracking.client import Client
from casstore.tracking.entities import FileInfo, Metric, Param, Run, RunStatus, RunTag, ViewType
from casstore.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME, MLFLOW_RUN_NOTE

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
    "set_experiment_tag",
    "set_experiment_tags",
    "delete_experiment",
    "restore_experiment",
    "delete_experiment_tag",
    "restore_run",
    "flush_artifact_async_logging",
    "set_model_version_tag",
    "delete_tag",
    "get_parent_run",
    "flush_async_logging",
    "RunOperations",
    "log_table",
    "load_table",
    "log_input",
    "log_inputs",
    "search_registered_models",
    "search_model_versions",
    "get_logged_model",
    "last_logged_model",
    "search_logged_models",
    "set_logged_model_tags",
]

#: search_runs' default max_results (MLflow's, for its DataFrame output)
SEARCH_MAX_RESULTS_PANDAS = 100_000

#: the tags MLflow keeps a run's description and its parent in
RUN_NOTE_TAG = MLFLOW_RUN_NOTE
PARENT_RUN_TAG = MLFLOW_PARENT_RUN_ID

#: a run to resume by the next start_run() without a run id (then unset), casstore's and MLflow's
RUN_ID_ENV = "CASSTORE_RUN_ID"
MLFLOW_RUN_ID_ENV = "MLFLOW_RUN_ID"

EXPERIMENT_NAME_ENV = "CASSTORE_EXPERIMENT_NAME"
EXPERIMENT_ID_ENV = "CASSTORE_EXPERIMENT_ID"
from casstore import _MLFLOW_EXPERIMENT_ENV  # noqa: E402  (taken when casstore was imported)


class ActiveRun(Run):
    """The run returned by ``start_run``; as a context manager it ends the run on exit:
    ``FINISHED`` normally, ``FAILED`` on an exception, ``KILLED`` on Ctrl-C."""

    def __init__(self, run: Run) -> None:
        super().__init__(run.info, run.data, run.inputs)

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            status = RunStatus.FINISHED
        elif issubclass(exc_type, KeyboardInterrupt):
            status = RunStatus.KILLED
        else:
            status = RunStatus.FAILED
        _end_run_of(self.info.run_id, status)


_logger = logging.getLogger("casstore")
_local = threading.local()
_state_lock = threading.Lock()
#: every run started by this process and not yet ended: run_id -> (run, client)
_open_runs: dict[str, tuple[ActiveRun, Client]] = {}
#: the run this process ended last (by end_run or leaving its ``with`` block)
_last_active: tuple[str, Client] | None = None
#: the model id (model digest) this process logged last
_last_logged_model: str | None = None
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
    else:
        exp_id = str(experiment_id)
    exp = client.get_experiment(exp_id)  # raises if there is none
    if exp.lifecycle_stage == "deleted":
        raise InvalidInputError(
            f"cannot set the deleted experiment {exp.name!r} (id {exp_id}) as the active experiment; "
            "restore it with Client().restore_experiment, or choose another"
        )
    _active_experiment = ("name", experiment_name) if experiment_name is not None else ("id", exp_id)
    return exp


def set_experiment_tag(key: str, value: Any) -> None:
    """Set a tag of the active experiment."""
    client = _client()
    client.set_experiment_tag(_active_experiment_id(client), key, value)


def set_experiment_tags(tags: dict[str, Any]) -> None:
    """Set tags of the active experiment."""
    client = _client()
    exp_id = _active_experiment_id(client)
    for k, v in _mapping(tags, "set_experiment_tags").items():
        client.set_experiment_tag(exp_id, k, v)


def delete_experiment(experiment_id: str) -> None:
    """Mark an experiment deleted (:func:`restore_experiment` undoes it)."""
    _client().delete_experiment(experiment_id)


def restore_experiment(experiment_id: str) -> None:
    """Make a deleted experiment active again."""
    _client().restore_experiment(experiment_id)


def delete_experiment_tag(key: str) -> None:
    """Delete a tag of the active experiment."""
    client = _client()
    client.delete_experiment_tag(_active_experiment_id(client), key)


def restore_run(run_id: str) -> None:
    """Refused: see :meth:`Client.restore_run`."""
    _client().restore_run(run_id)


def _active_experiment_id(client: Client) -> str:
    chosen = _active_experiment
    if chosen is None:
        if os.environ.get(EXPERIMENT_ID_ENV):
            chosen = ("id", os.environ[EXPERIMENT_ID_ENV])
        elif os.environ.get(EXPERIMENT_NAME_ENV):
            chosen = ("name", os.environ[EXPERIMENT_NAME_ENV])
        elif _MLFLOW_EXPERIMENT_ENV is not None:
            chosen = _MLFLOW_EXPERIMENT_ENV
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
    return list(_client().search_experiments(view_type, max_results, filter_string, order_by))


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
    """Start a new run, or resume one by ``run_id`` (else by ``CASSTORE_RUN_ID`` or
    ``MLFLOW_RUN_ID``, read once); use it as a context manager.

    Leaving the ``with`` block ends the run: ``FINISHED``, or ``FAILED`` if an exception
    escaped it (``KILLED`` on Ctrl-C). Resuming an ended run reopens it without changing
    anything it holds: params and artifacts stay bound, and ending it again writes a new
    seal whose manifest names the previous run digest (``Client().get_run_seals``).
    """
    st = _stack()
    if st and not nested:
        raise RunStateError(
            f"run {st[-1][0].info.run_id} is already active. End it with end_run() first, "
            "or start a nested run with start_run(nested=True)."
        )
    client = _client()
    tags = {k: str(v) for k, v in _mapping(tags or {}, "start_run(tags=...)").items()}
    if description:
        if RUN_NOTE_TAG in tags:
            raise InvalidInputError(
                f"start_run got a description and the tag {RUN_NOTE_TAG!r}, which holds the description: "
                "give only one of them"
            )
        tags[RUN_NOTE_TAG] = str(description)
    if parent_run_id and st and parent_run_id != st[-1][0].info.run_id:
        raise InvalidInputError(
            f"the active run {st[-1][0].info.run_id} is not the parent_run_id {parent_run_id} given; "
            "end it with end_run() first, or start the run nested under it"
        )
    if run_id is None:
        for var in (RUN_ID_ENV, MLFLOW_RUN_ID_ENV):
            if os.environ.get(var):
                run_id = os.environ.pop(var)  # as MLflow: the variable resumes one run
                break
    if run_id is not None:
        run = _resume(client, check_run_id(run_id), experiment_id, run_name, tags)
    else:
        parent = parent_run_id or (st[-1][0].info.run_id if st and nested else None)
        if parent:
            if client.get_run(parent).info.lifecycle_stage == "deleted":
                raise RunStateError(f"cannot start a run under parent run {parent}: it is deleted")
            tags[PARENT_RUN_TAG] = parent
        exp_id = str(experiment_id) if experiment_id is not None else _active_experiment_id(client)
        run = client.create_run(exp_id, tags=tags, run_name=run_name)
    active = ActiveRun(run)
    st.append((active, client))
    with _state_lock:
        _open_runs[run.info.run_id] = (active, client)
    return active


def _resume(client: Client, run_id: str, experiment_id: str | None, run_name: str | None, tags: dict[str, str]) -> Run:
    view = client.store.get_run(run_id)
    if view.deleted:
        raise RunStateError(f"cannot resume run {run_id}: it is deleted")
    if experiment_id is not None and str(experiment_id) != view.experiment_id:
        raise InvalidInputError(
            f"run {run_id} belongs to experiment {view.experiment_id}, not {experiment_id}"
        )
    if view.sealed:
        uri.forget_handle(client.store, run_id)
        uri.remember_handle(client.store, client.store.reopen_run(run_id))
    else:
        client._handle(run_id)
    if run_name is not None:
        tags[MLFLOW_RUN_NAME] = run_name
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


def _mapping(value: object, call: str) -> Mapping[str, Any]:
    """``value`` if it is a mapping of names to values (what ``log_params`` and the like take)."""
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"{call} takes a dict of names to values, such as {{'lr': 0.1}}, "
                                f"not a {type(value).__name__}")
    return value


def _done(synchronous: bool | None, value: Any = None) -> Any:
    """What a logging call returns: with ``synchronous=False``, a :class:`RunOperations`
    (its ``wait()`` returns at once: the write is done when the call returns, as casstore
    writes records synchronously and buffers only metric points, which
    :func:`flush_async_logging` writes), else ``value``."""
    return RunOperations() if synchronous is False else value


def log_param(key: str, value: Any, synchronous: bool | None = None) -> Any:
    """Record a param of the active run; the same value again is a no-op, another value raises."""
    run_id, client = _run_for_write()
    return _done(synchronous, client.log_param(run_id, key, value))


def log_params(params: dict[str, Any], synchronous: bool | None = None, run_id: str | None = None) -> Any:
    rid, client = _run_for_write(run_id)
    client.log_batch(rid, params=[Param(k, str(v)) for k, v in _mapping(params, "log_params").items()])
    return _done(synchronous)


def log_metric(
    key: str, value: float, step: int | None = None, synchronous: bool | None = None,
    timestamp: int | None = None, run_id: str | None = None, model_id: str | None = None,
    dataset: Any = None,
) -> Any:
    """Record a metric value (buffered and written in batches; nothing is lost at the run's end or exit).
    With ``model_id``, it is also one of that logged model's metrics; a ``dataset`` is recorded
    as an input of the run unless it is one already."""
    rid, client = _run_for_write(run_id)
    client.log_metric(rid, key, value, timestamp, step, model_id=model_id)
    _log_metric_dataset(client, rid, dataset)
    return _done(synchronous)


def log_metrics(
    metrics: dict[str, float], step: int | None = None, synchronous: bool | None = None,
    run_id: str | None = None, timestamp: int | None = None, model_id: str | None = None,
    dataset: Any = None,
) -> Any:
    rid, client = _run_for_write(run_id)
    given = _mapping(metrics, "log_metrics")
    if model_id is not None:
        model_id = client.check_model_id(model_id)  # before the values are logged: a bad id logs nothing
    for k, v in given.items():
        client.log_metric(rid, k, v, timestamp, step)
    if model_id is not None:
        client.link_model_metrics(rid, model_id, [(k, 0 if step is None else step) for k in given])
    _log_metric_dataset(client, rid, dataset)
    return _done(synchronous)


def _log_metric_dataset(client: Client, run_id: str, dataset: Any) -> None:
    """The dataset a metric was computed on, recorded as MLflow does: an input of the run
    (without a context) unless the run has one of that name and digest."""
    if dataset is None:
        return
    inputs = client.store.get_run(run_id, flush=False, warn=False).inputs
    if not any(i["name"] == dataset.name and i["digest"] == dataset.digest for i in inputs):
        client.log_input(run_id, dataset)


def set_tag(key: str, value: Any, synchronous: bool | None = None) -> Any:
    run_id, client = _run_for_write()
    client.set_tag(run_id, key, value)
    return _done(synchronous)


def set_tags(tags: dict[str, Any], synchronous: bool | None = None) -> Any:
    run_id, client = _run_for_write()
    client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in _mapping(tags, "set_tags").items()])
    return _done(synchronous)


def delete_tag(key: str) -> None:
    """Delete a tag of the active run (recorded: the run's records keep the tag's history)."""
    run_id, client = _run_for_write()
    client.delete_tag(run_id, key)


def flush_artifact_async_logging() -> None:
    """Nothing to wait for: casstore stores an artifact before ``log_artifact`` returns."""


def flush_async_logging() -> None:
    """Write every metric point this process has buffered, for every open run, and publish
    to the search index the summaries of the runs it has ended (otherwise published within
    a second, in the background): call it before removing a store a process has just used."""
    with _state_lock:
        pending = list(_open_runs.items())
    for run_id, (_, client) in pending:
        h = uri.cached_handle(client.store, run_id)
        if h is not None:
            h.flush_metrics()
    from casstore.runs import index

    index.flush_pending()


class RunOperations:
    """What a logging call with ``synchronous=False`` returns (MLflow's ``RunOperations``)."""

    def wait(self) -> None:
        """Return once the logging is done (it is: casstore's writes return when done)."""


def get_parent_run(run_id: str) -> Run | None:
    """The parent of a nested run (``None`` for a top-level run)."""
    return _client().get_parent_run(run_id)


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


def log_input(dataset: Any = None, context: str | None = None, tags: dict[str, str] | None = None,
              model: Any = None) -> None:
    """Record a dataset (``casstore.data.from_pandas``/``from_numpy``) the active run used,
    and, with ``model`` (a ``LoggedModelInput``), a logged model it used."""
    if dataset is None and model is None:
        raise InvalidInputError("log_input takes a dataset, a model (LoggedModelInput), or both")
    rid, client = _run_for_write()
    if dataset is not None:
        client.log_input(rid, dataset, context, tags)
    if model is not None:
        client.log_inputs(rid, models=[model])


def log_inputs(
    datasets: Sequence[Any] | None = None, contexts: Sequence[str | None] | None = None,
    tags_list: Sequence[dict[str, str] | None] | None = None, models: Sequence[Any] | None = None,
) -> None:
    """Record several datasets the active run used (``contexts`` and ``tags_list`` pair with them)."""
    datasets = list(datasets or [])
    contexts = list(contexts) if contexts is not None else [None] * len(datasets)
    tags_list = list(tags_list) if tags_list is not None else [None] * len(datasets)
    if len(contexts) != len(datasets) or len(tags_list) != len(datasets):
        raise InvalidInputError("log_inputs: datasets, contexts and tags_list must have the same length")
    for ds, ctx, tg in zip(datasets, contexts, tags_list):
        log_input(ds, ctx, tg, None)
    if models:
        rid, client = _run_for_write()
        client.log_inputs(rid, models=list(models))


def log_table(data: Any, artifact_file: str, run_id: str | None = None) -> None:
    """Log a DataFrame or a dict of columns as a table (``.json`` or ``.parquet``)."""
    rid, client = _run_for_write(run_id)
    client.log_table(rid, data, artifact_file)


def load_table(artifact_file: str, run_ids: list[str] | None = None, extra_columns: list[str] | None = None) -> Any:
    """The rows of a table logged by the active experiment's runs (or by ``run_ids``), as one DataFrame."""
    client = _client()
    return client.load_table(_active_experiment_id(client), artifact_file, run_ids, extra_columns)


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


def get_logged_model(model_id: str) -> Any:
    """A logged model by its id (its model digest: ``info.model_id``)."""
    return _client().get_logged_model(model_id)


def last_logged_model() -> Any:
    """The model this process logged last (``None`` before any), as :func:`get_logged_model` gives it."""
    model_id = _last_logged_model
    return None if model_id is None else get_logged_model(model_id)


def _note_logged_model(model_id: str) -> None:
    global _last_logged_model
    _last_logged_model = model_id


def search_logged_models(
    experiment_ids: list[str] | None = None, filter_string: str | None = None, datasets: Any = None,
    max_results: int | None = None, order_by: list[Any] | None = None, output_format: str = "pandas",
) -> Any:
    """Models logged by the runs of the active experiment (or ``experiment_ids``), as
    MLflow 3: a DataFrame by default, ``output_format="list"`` for ``LoggedModel`` objects."""
    if datasets:
        raise InvalidInputError("search_logged_models: datasets= is not supported; filter on params or metrics")
    if output_format not in ("list", "pandas"):
        raise InvalidInputError(f"unsupported output_format {output_format!r}: use 'pandas' or 'list'")
    client = _client()
    ids = list(experiment_ids) if experiment_ids else [_active_experiment_id(client)]
    models = client.search_logged_models(ids, filter_string, max_results, order_by)
    if output_format == "list":
        return models
    pd = _pandas()
    return pd.DataFrame([m.to_dictionary() for m in models],
                        columns=["model_id", "name", "experiment_id", "source_run_id", "creation_timestamp",
                                 "tags", "params", "metrics", "status", "model_type"])


def set_logged_model_tags(model_id: str, tags: dict[str, Any]) -> None:
    """Refused: see :meth:`Client.set_logged_model_tags`."""
    _client().set_logged_model_tags(model_id, tags)


def search_registered_models(
    max_results: int | None = None, filter_string: str | None = None, order_by: list[str] | None = None
) -> list[Any]:
    """Registered models matching ``filter_string`` (``name LIKE 'fraud%'``), as MLflow's fluent call."""
    return list(_client().search_registered_models(filter_string, max_results, order_by))


def set_model_version_tag(name: str, version: int | str | None = None, key: str | None = None, value: Any = None) -> None:
    """Set a tag of a registered model version."""
    _client().set_model_version_tag(name, version, key, value)


def search_model_versions(
    max_results: int | None = None, filter_string: str | None = None, order_by: list[str] | None = None
) -> list[Any]:
    """Model versions matching ``filter_string`` (``name = 'fraud'``), as MLflow's fluent call."""
    return list(_client().search_model_versions(filter_string, max_results, order_by))




def search_runs(
    experiment_ids: Sequence[str] | str | None = None,
    filter_string: str = "",
    run_view_type: int = ViewType.ACTIVE_ONLY,
    max_results: int = SEARCH_MAX_RESULTS_PANDAS,
    order_by: list[str] | None = None,
    output_format: str = "pandas",
    search_all_experiments: bool = False,
    experiment_names: list[str] | None = None,
) -> Any:
    """Runs matching MLflow's filter grammar, as MLflow returns them: a pandas DataFrame
    (one row per run: ``run_id``, ``experiment_id``, ``status``, ``artifact_uri``,
    ``start_time``, ``end_time``, ``digest``, then ``metrics.*``, ``params.*``, ``tags.*``),
    or with ``output_format="list"`` a list of :class:`Run`.

    Without ``experiment_ids`` or ``experiment_names``, searches the active experiment
    (all experiments with ``search_all_experiments=True``). A name with no experiment is
    skipped with a warning, as in MLflow.
    """
    if output_format not in ("list", "pandas"):
        raise InvalidInputError(
            f"unsupported output_format {output_format!r}: search_runs returns 'pandas' (a DataFrame, the default) or 'list'"
        )
    if experiment_ids and experiment_names:
        raise InvalidInputError("search_runs takes experiment_ids or experiment_names, but not both")
    if output_format == "pandas":
        pd = _pandas()  # before searching: a missing pandas is said at once
    client = _client()
    ids: list[str] | None
    if experiment_names:
        ids = []
        for name in experiment_names:
            if name is None:
                continue
            exp = client.get_experiment_by_name(name)
            if exp is None:
                _logger.warning("no experiment named %r in store %s; it is not searched", name, client.store.url)
            else:
                ids.append(exp.experiment_id)
    elif experiment_ids:
        ids = [experiment_ids] if isinstance(experiment_ids, str) else [str(i) for i in experiment_ids]
    elif search_all_experiments:
        ids = None
    else:
        ids = [_active_experiment_id(client)]
    runs = [] if ids == [] else client.search_runs(ids, filter_string, run_view_type, max_results, order_by)
    if output_format == "pandas":
        return runs_frame(list(runs), pd)
    return list(runs)


def _pandas() -> Any:
    try:
        import pandas
    except ImportError as e:
        raise InvalidInputError(
            "search_runs returns a pandas DataFrame by default, and pandas is not installed: "
            "pip install 'casstore[pandas]', or pass output_format='list' for a list of Run objects"
        ) from e
    return pandas


#: the columns every runs frame has, in order (MLflow's, and the run digest)
FRAME_COLUMNS = ["run_id", "experiment_id", "status", "artifact_uri", "start_time", "end_time", "digest"]


def runs_frame(runs: list[Run], pd: Any) -> Any:
    """Runs as MLflow's search_runs frame: a missing metric is NaN, a missing param or tag None."""
    import numpy as np

    cols: dict[str, list[Any]] = {c: [] for c in FRAME_COLUMNS}
    for r in runs:
        cols["run_id"].append(r.info.run_id)
        cols["experiment_id"].append(r.info.experiment_id)
        cols["status"].append(r.info.status)
        cols["artifact_uri"].append(r.info.artifact_uri)
        cols["start_time"].append(pd.to_datetime(r.info.start_time, unit="ms", utc=True))
        cols["end_time"].append(pd.to_datetime(r.info.end_time, unit="ms", utc=True) if r.info.end_time else pd.NaT)
        cols["digest"].append(r.info.digest)
    parts: list[tuple[str, Any, list[dict[str, Any]]]] = [
        ("metrics.", np.nan, [dict(r.data.metrics) for r in runs]),
        ("params.", None, [dict(r.data.params) for r in runs]),
        ("tags.", None, [dict(r.data.tags) for r in runs]),
    ]
    for prefix, null, values in parts:
        for k in sorted({k for v in values for k in v}):
            cols[prefix + k] = [v.get(k, null) for v in values]
    return pd.DataFrame(cols)


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
    global _last_active, _active_experiment, _last_logged_model
    _local.stack = []
    with _state_lock:
        _open_runs.clear()
    _last_active = None
    _active_experiment = None
    _last_logged_model = None


def _after_fork_in_child() -> None:
    # a forked child may log to the parent's active run, but must not seal it at its exit
    global _state_lock
    _state_lock = threading.Lock()
    _open_runs.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
