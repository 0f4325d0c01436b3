"""The client: MLflow's ``MlflowClient`` methods for experiments, runs and artifacts.

Unlike the fluent API it has no notion of an active run: every call names its run.
The store is fixed when the client is made (``tracking_uri``, else the current
tracking URI). The model-registry methods are added to :class:`Client` by a
mixin from ``casstore.registry``.

>>> import casstore
>>> c = casstore.Client("memory://doc-client")
>>> run = c.create_run(c.create_experiment("doc"), run_name="r")
>>> c.log_param(run.info.run_id, "C", 0.1)
0.1
>>> c.set_terminated(run.info.run_id)
>>> c.get_run(run.info.run_id).info.status
'FINISHED'
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from casstore.exceptions import InvalidInputError
from casstore.registry.client import RegistryClient
from casstore.runs import DEFAULT_EXPERIMENT_ID, Experiment, RunHandle, RunStore
from casstore.runs.layout import check_run_id, check_whole, now_ms
from casstore.runs.search import EXPERIMENT_ATTRIBUTES, matches, parse_filter, parse_order_by, sort_items
from casstore.tracking import _artifacts, uri
from casstore.tracking.context import context_tags
from casstore.tracking.entities import FileInfo, Metric, Param, Run, RunStatus, RunTag, ViewType

__all__ = ["TrackingClient", "Client", "MlflowClient", "LOGGED_IMAGES_TAG", "PagedList", "SEARCH_MAX_RESULTS_DEFAULT"]

#: the page size of ``Client.search_runs`` when none is given (MLflow's)
SEARCH_MAX_RESULTS_DEFAULT = 1000
T = TypeVar("T")


class PagedList(list[T]):
    """A page of results; ``token`` is the ``page_token`` of the next page (``None``: no more)."""

    def __init__(self, items: Iterable[T], token: str | None) -> None:
        super().__init__(items)
        self.token = token

#: the tag MLflow sets on a run that has logged an image series (``log_image(key=...)``)
LOGGED_IMAGES_TAG = "mlflow.loggedImages"


class TrackingClient:
    """Experiments, runs, params, metrics, tags and artifacts of one store."""

    def __init__(
        self,
        tracking_uri: str | os.PathLike[str] | None = None,
        registry_uri: str | None = None,
        *,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        self._tracking_uri = os.fspath(tracking_uri) if tracking_uri is not None else uri.get_tracking_uri()
        self._store_uri = uri.resolve_store_uri(self._tracking_uri)
        self._registry_uri = registry_uri or self._tracking_uri
        self._storage_options = storage_options
        self._store: RunStore | None = None

    @property
    def tracking_uri(self) -> str:
        return self._tracking_uri

    @property
    def store(self) -> RunStore:
        """The run store this client writes to (opened on first use)."""
        if self._store is None:
            self._store = uri.get_store(self._store_uri, self._storage_options)
        return self._store

    # ---- experiments -----------------------------------------------------------------

    def create_experiment(
        self, name: str, artifact_location: str | None = None, tags: dict[str, Any] | None = None
    ) -> str:
        """Create an experiment; return its id. ``artifact_location`` is not used: artifacts
        always live in the store."""
        return self.store.create_experiment(name, {k: str(v) for k, v in (tags or {}).items()})

    def get_experiment(self, experiment_id: str) -> Experiment:
        return self.store.get_experiment(str(experiment_id))

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        return self.store.get_experiment_by_name(name)

    def search_experiments(
        self,
        view_type: int = ViewType.ACTIVE_ONLY,
        max_results: int | None = None,
        filter_string: str | None = None,
        order_by: list[str] | None = None,
    ) -> list[Experiment]:
        """Experiments matching a filter on ``name``, ``experiment_id``, ``creation_time`` or ``tags.<key>``."""
        comparisons = parse_filter(filter_string, EXPERIMENT_ATTRIBUTES)
        keys = parse_order_by(order_by, EXPERIMENT_ATTRIBUTES)
        exps = [e for e in self.store.list_experiments() if matches(comparisons, functools.partial(_exp_value, e))]
        if view_type == ViewType.DELETED_ONLY:
            exps = []
        exps = sort_items(exps, keys, _exp_value, EXPERIMENT_ATTRIBUTES)
        return exps if max_results is None else exps[:max_results]

    # ---- runs ----------------------------------------------------------------------------

    def create_run(
        self,
        experiment_id: str | None = None,
        start_time: int | None = None,
        tags: dict[str, Any] | None = None,
        run_name: str | None = None,
    ) -> Run:
        """Start a run; it records the reproducibility context (source, git, versions) as tags."""
        all_tags = context_tags()
        all_tags.update({k: str(v) for k, v in (tags or {}).items()})
        run_name = run_name or all_tags.get("mlflow.runName") or _random_name()
        all_tags["mlflow.runName"] = run_name
        exp_id = DEFAULT_EXPERIMENT_ID if experiment_id is None else str(experiment_id)
        handle = self.store.create_run(exp_id, run_name=run_name, tags=all_tags, start_time=start_time)
        uri.remember_handle(self.store, handle)
        return Run.from_view(handle.initial_view())  # what it holds: no need to read it back

    def get_run(self, run_id: str) -> Run:
        """The run: from its verified manifest if sealed, else from its live records."""
        return Run.from_view(self.store.get_run(run_id))

    def _handle(self, run_id: str) -> RunHandle:
        run_id = check_run_id(run_id)
        h = uri.cached_handle(self.store, run_id)
        if h is None:
            h = uri.remember_handle(self.store, self.store.open_run(run_id))
        return h

    def set_terminated(self, run_id: str, status: str | None = None, end_time: int | None = None) -> None:
        """End and seal a run (``FINISHED`` unless ``status`` says ``FAILED`` or ``KILLED``)."""
        status = status or RunStatus.FINISHED
        run_id = check_run_id(run_id)
        h = uri.cached_handle(self.store, run_id)
        if h is None:
            if self.store.seal_record(run_id) is not None:
                return  # already sealed: ending again is a no-op
            h = self.store.open_run(run_id)
        h.end(status)
        uri.forget_handle(self.store, run_id)

    def update_run(self, run_id: str, status: str | None = None, name: str | None = None) -> None:
        if name is not None:
            self.set_tag(run_id, "mlflow.runName", name)
        if status is not None and RunStatus.is_terminated(status):
            self.set_terminated(run_id, status)

    def delete_run(self, run_id: str) -> None:
        """Mark a run deleted (recorded in the store, never silent; its data stays until gc)."""
        self.store.delete_run(run_id)

    def search_runs(
        self,
        experiment_ids: Sequence[str] | str | None = None,
        filter_string: str = "",
        run_view_type: int = ViewType.ACTIVE_ONLY,
        max_results: int | None = SEARCH_MAX_RESULTS_DEFAULT,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList[Run]:
        """Runs matching an MLflow filter string, ordered by ``order_by`` then newest first:
        a page of at most ``max_results`` (every match if ``None``) whose ``token`` is the
        ``page_token`` of the next page (``None`` after the last), as MLflow's."""
        ids = [experiment_ids] if isinstance(experiment_ids, str) else experiment_ids
        deleted = {ViewType.ACTIVE_ONLY: False, ViewType.DELETED_ONLY: True, ViewType.ALL: None}.get(run_view_type, False)
        page = self.store.search_runs(
            None if ids is None else [str(i) for i in ids], filter_string, order_by, max_results, deleted,
            page_token=page_token,
        )
        return PagedList([Run.from_view(v) for v in page], page.token)

    # ---- params, metrics, tags --------------------------------------------------------

    def log_param(self, run_id: str, key: str, value: Any, synchronous: bool | None = None) -> Any:
        """Record a param; logging the same value again is a no-op, another value raises."""
        self._handle(run_id).log_param(key, str(value))
        return value

    def log_metric(
        self, run_id: str, key: str, value: float, timestamp: int | None = None, step: int | None = None,
        synchronous: bool | None = None,
    ) -> None:
        self._handle(run_id).log_metric(key, value, 0 if step is None else step, timestamp)

    def log_batch(
        self, run_id: str, metrics: Iterable[Metric] = (), params: Iterable[Param] = (), tags: Iterable[RunTag] = (),
        synchronous: bool | None = None,
    ) -> None:
        """Params, tags and metrics in one write (one batch record in a version-4 store)."""
        ps: dict[str, str] = {}
        for p in params:
            value = str(p.value)
            if ps.setdefault(p.key, value) != value:
                raise InvalidInputError(
                    f"log_batch got param {p.key!r} twice, with values {ps[p.key]!r} and {value!r}; a param has one value"
                )
        ts = {t.key: str(t.value) for t in tags}
        self._handle(run_id).log_batch(ps, ts, [(m.key, m.value, m.step, m.timestamp) for m in metrics])

    def set_tag(self, run_id: str, key: str, value: Any, synchronous: bool | None = None) -> None:
        self._handle(run_id).set_tag(key, str(value))

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        """Every value logged for a metric, by step then time."""
        view = self.store.get_run(run_id)
        return [Metric(key, v, t, s) for v, s, t in view.metric_history(key)]

    # ---- artifacts ---------------------------------------------------------------------

    def log_artifact(self, run_id: str, local_path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        """Log a file (or a directory, as ``<artifact_path>/<dirname>/...``)."""
        _artifacts.log_local(self._handle(run_id), local_path, artifact_path)

    def log_artifacts(self, run_id: str, local_dir: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        """Log every file under ``local_dir`` under ``artifact_path``."""
        _artifacts.log_local_dir(self._handle(run_id), local_dir, artifact_path)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        if not isinstance(text, str):
            raise InvalidInputError(f"log_text takes a str, got {type(text).__name__}")
        self._handle(run_id).log_bytes(artifact_file, text.encode("utf-8"))

    def log_dict(self, run_id: str, dictionary: Any, artifact_file: str) -> None:
        self._handle(run_id).log_bytes(artifact_file, _artifacts.dict_bytes(dictionary, artifact_file))

    def log_figure(
        self, run_id: str, figure: Any, artifact_file: str, *, save_kwargs: dict[str, Any] | None = None
    ) -> None:
        self._handle(run_id).log_bytes(artifact_file, _artifacts.figure_bytes(figure, artifact_file, save_kwargs))

    def log_image(
        self, run_id: str, image: Any, artifact_file: str | None = None, key: str | None = None,
        step: int | None = None, timestamp: int | None = None, synchronous: bool | None = None,
    ) -> None:
        """Log a numpy array or PIL image, as MLflow 3: with ``artifact_file``, as that file;
        with ``key``, as the image at ``step`` (default 0) and ``timestamp`` (ms, default now)
        of a series, written under ``images/`` with a preview (and the tag
        ``mlflow.loggedImages``). Give exactly one of ``artifact_file`` and ``key``."""
        if artifact_file is not None:
            if (key, step, timestamp) != (None, None, None):
                raise InvalidInputError(
                    "log_image takes artifact_file alone (a static image), or key with step and timestamp "
                    "(an image series), not both"
                )
            self._handle(run_id).log_bytes(artifact_file, _artifacts.image_bytes(image, artifact_file))
            return
        if key is None:
            raise InvalidInputError(
                "log_image needs exactly one of artifact_file (a static image, such as 'images/sample.png') "
                "or key (an image series, with step and timestamp)"
            )
        at = 0 if step is None else check_whole(step, f"log_image {key!r}: step")
        ts = now_ms() if timestamp is None else check_whole(timestamp, f"log_image {key!r}: timestamp (ms)")
        files = _artifacts.image_series_files(image, key, at, ts)
        h = self._handle(run_id)
        for path, data in files:
            h.log_bytes(path, data)
        h.set_tag(LOGGED_IMAGES_TAG, "True")

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[FileInfo]:
        """Files (with size and BLAKE3 digest) and directories directly under ``path``."""
        return _artifacts.list_entries(self.store.get_run(run_id), path)

    def download_artifacts(self, run_id: str, path: str = "", dst_path: str | os.PathLike[str] | None = None) -> str:
        """Download an artifact file or directory (verified); return its local path."""
        return _artifacts.download(self.store, self.store.get_run(run_id), path, dst_path)


def _exp_value(e: Experiment, entity: str, key: str) -> Any:
    if entity == "tags":
        return e.tags.get(key)
    if entity == "attributes":
        return getattr(e, key, None)
    return None


_ADJ = ("amber", "bold", "calm", "deft", "eager", "fond", "gentle", "honest", "keen", "lucid", "merry",
        "noble", "patient", "quick", "rustic", "steady", "tidy", "vivid", "wise", "zesty")
_NOUN = ("otter", "heron", "lynx", "badger", "finch", "marten", "ibis", "newt", "panda", "quail", "raven",
         "sparrow", "tapir", "urchin", "vole", "wren", "yak", "zebra", "gecko", "koala")


def _random_name() -> str:
    import random

    return f"{random.choice(_ADJ)}-{random.choice(_NOUN)}-{random.randint(100, 999)}"


# ---- Client: the tracking methods, plus the registry's (mixed in below) ----------------------


class Client(RegistryClient, TrackingClient):
    """MLflow's ``MlflowClient``: tracking methods, and registry methods where installed."""


MlflowClient = Client
