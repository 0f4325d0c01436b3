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

import dataclasses
import functools
import json
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from casstore.exceptions import InvalidInputError, ObjectNotFoundError, RunStateError
from casstore.objects.digest import check_digest
from casstore.registry.client import RegistryClient
from casstore.runs import DEFAULT_EXPERIMENT_ID, Experiment, RunHandle, RunStore
from casstore.runs.layout import check_name, check_run_id, check_whole, now_ms
from casstore.runs.search import EXPERIMENT_ATTRIBUTES, matches, parse_filter, parse_order_by, sort_items
from casstore.tracking import _artifacts, uri
from casstore.tracking.context import context_tags
from casstore.tracking.entities import (
    CONTEXT_TAG,
    DatasetInput,
    MODEL_METRICS_TAG,
    FileInfo,
    LoggedModel,
    LoggedModelOutput,
    Metric,
    PagedList,
    Param,
    Run,
    RunOutputs,
    RunStatus,
    RunTag,
    ViewType,
    add_linked_step,
    linked_model_ids,
    linked_steps,
)
from casstore.utils.mlflow_tags import MLFLOW_LOGGED_ARTIFACTS, MLFLOW_LOGGED_IMAGES, MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

if TYPE_CHECKING:
    from casstore.models.entry import ModelEntry

__all__ = ["TrackingClient", "Client", "MlflowClient", "LOGGED_IMAGES_TAG", "new_run_tags"]

#: the page size of ``Client.search_runs`` when none is given (MLflow's)
SEARCH_MAX_RESULTS_DEFAULT = 1000

#: the tag MLflow sets on a run that has logged an image series (``log_image(key=...)``)
LOGGED_IMAGES_TAG = MLFLOW_LOGGED_IMAGES
#: the tag listing a run's tables (``log_table``), as MLflow writes it
LOGGED_ARTIFACTS_TAG = MLFLOW_LOGGED_ARTIFACTS


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
        #: the metric links of ``link_model_metrics``, by run and tag, as this client last wrote them
        self._model_links: dict[tuple[str, str], dict[str, list[list[int]]]] = {}
        #: logged models this client found in the store (their ids are digests: what they name stays)
        self._models_seen: set[str] = set()

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
        """Create an experiment; return its id. Artifacts always live in the store, content
        addressed, so an ``artifact_location`` is refused (rather than ignored)."""
        if artifact_location is not None:
            raise InvalidInputError(
                f"create_experiment got artifact_location={artifact_location!r}, which casstore cannot honour: "
                f"every artifact is stored in the tracking store ({self.store.url}), named by its digest. "
                "Omit artifact_location, or set the tracking URI to where artifacts should go"
            )
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
        page_token: str | None = None,
    ) -> PagedList[Experiment]:
        """Experiments matching a filter on ``name``, ``experiment_id``, ``creation_time`` or ``tags.<key>``."""
        comparisons = parse_filter(filter_string, EXPERIMENT_ATTRIBUTES)
        keys = parse_order_by(order_by, EXPERIMENT_ATTRIBUTES)
        stages = {ViewType.ACTIVE_ONLY: ("active",), ViewType.DELETED_ONLY: ("deleted",)}.get(view_type, ("active", "deleted"))
        exps = [
            e for e in self.store.list_experiments()
            if e.lifecycle_stage in stages and matches(comparisons, functools.partial(_exp_value, e))
        ]
        exps = sort_items(exps, keys, _exp_value, EXPERIMENT_ATTRIBUTES)
        return PagedList.page(exps, PagedList.offset_of(page_token), max_results)

    def set_experiment_tag(self, experiment_id: str, key: str, value: Any) -> None:
        """Set a tag of an experiment (recorded as an event; the latest value wins)."""
        check_name("tag", key)
        self.store.add_experiment_event(str(experiment_id), "set_tag", key=key, value=str(value))

    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        self.store.add_experiment_event(str(experiment_id), "delete_tag", key=key)

    def delete_experiment(self, experiment_id: str) -> None:
        """Mark an experiment deleted (recorded; its runs stay, ``restore_experiment`` undoes it)."""
        self.store.add_experiment_event(str(experiment_id), "delete")

    def restore_experiment(self, experiment_id: str) -> None:
        self.store.add_experiment_event(str(experiment_id), "restore")

    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        """Give an experiment a new name. The old name stays bound to it (names are never
        reused for another experiment)."""
        self.store.add_experiment_event(str(experiment_id), "rename", name=new_name)

    # ---- runs ----------------------------------------------------------------------------

    def create_run(
        self,
        experiment_id: str | None = None,
        start_time: int | None = None,
        tags: dict[str, Any] | None = None,
        run_name: str | None = None,
    ) -> Run:
        """Start a run; it records the reproducibility context (source, git, versions) as tags."""
        run_name, all_tags = new_run_tags(tags, run_name)
        exp_id = DEFAULT_EXPERIMENT_ID if experiment_id is None else str(experiment_id)
        if not self.store.experiment_is_active(exp_id):
            raise InvalidInputError(
                f"experiment {exp_id} is deleted; a run can be created only in an active experiment "
                "(restore_experiment brings it back)"
            )
        handle = self.store.create_run(exp_id, run_name=run_name, tags=all_tags, start_time=start_time)
        uri.remember_handle(self.store, handle)
        return Run.from_view(handle.initial_view())  # what it holds: no need to read it back

    def get_run(self, run_id: str) -> Run:
        """The run: from its verified manifest if sealed, else from its live records. A run
        of a deleted experiment is ``deleted`` while the experiment is (as MLflow's)."""
        view = self.store.get_run(run_id)
        if not view.deleted and self.store.deleted_experiment_ids([view.experiment_id]):
            view = dataclasses.replace(view, deleted=True)
        return Run.from_view(view, functools.partial(self._outputs, view))

    def _outputs(self, view: Any) -> RunOutputs:
        """The models a run logged, with their steps, in the order they were logged."""
        from casstore.models.fetch import load_entry

        refs = sorted(view.models.values(), key=lambda r: (r.logged_at, r.name))
        return RunOutputs([LoggedModelOutput(r.digest, load_entry(self.store, r.digest).step) for r in refs])

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
                return  # already sealed: ending again is a no-op (resume it first to log more)
            h = self.store.open_run(run_id)
        h.end(status, end_time)
        uri.forget_handle(self.store, run_id)

    def get_run_seals(self, run_id: str) -> list[dict[str, Any]]:
        """Every seal of a run, oldest first (``generation``, ``digest``, ``status``,
        ``end_time``): more than one for a run resumed after it ended. Each manifest after
        the first names the digest before it (``previous``), and each stays verifiable."""
        return self.store.seal_history(check_run_id(run_id))

    def update_run(self, run_id: str, status: str | None = None, name: str | None = None) -> None:
        if name is not None:
            self.set_tag(run_id, MLFLOW_RUN_NAME, name)
        if status is not None and RunStatus.is_terminated(status):
            self.set_terminated(run_id, status)

    def delete_run(self, run_id: str) -> None:
        """Mark a run deleted (recorded in the store, never silent; its data stays until gc)."""
        self.store.delete_run(run_id)

    def restore_run(self, run_id: str) -> None:
        """Refused: a deleted run stays deleted. Its deletion lets ``casstore gc`` (of this or
        an earlier casstore, on any machine sharing the store) reclaim its content, so the
        run may already have lost what it pinned; bringing it back could only show a run
        whose files cannot be read."""
        view = self.store.get_run(check_run_id(run_id))
        if not view.deleted:
            return  # as MLflow: restoring an active run changes nothing
        raise RunStateError(
            f"run {run_id} is deleted and cannot be restored: once deleted, a run's content may be reclaimed by "
            "`casstore gc`. Its records stay readable (get_run, search_runs with ViewType.ALL); to keep working "
            "from it, start a new run"
        )

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
        # a search result lists no models: a run that linked metrics to models is read whole, to
        # tell the models it used from those it logged
        views = [dataclasses.replace(self.store.get_run(v.run_id), deleted=v.deleted) if linked_model_ids(v.tags) else v
                 for v in page]
        return PagedList([Run.from_view(v, functools.partial(self._outputs_of, v.run_id)) for v in views], page.token)

    def _outputs_of(self, run_id: str) -> RunOutputs:
        return self._outputs(self.store.get_run(run_id))

    # ---- params, metrics, tags --------------------------------------------------------

    def log_param(self, run_id: str, key: str, value: Any, synchronous: bool | None = None) -> Any:
        """Record a param; logging the same value again is a no-op, another value raises."""
        self._handle(run_id).log_param(key, str(value))
        return value

    def log_metric(
        self, run_id: str, key: str, value: float, timestamp: int | None = None, step: int | None = None,
        synchronous: bool | None = None, dataset_name: str | None = None, dataset_digest: str | None = None,
        model_id: str | None = None,
    ) -> None:
        """Record a metric value; with ``model_id``, also one of that logged model's
        metrics (``get_logged_model(model_id).metrics``), as MLflow 3 links them."""
        step = 0 if step is None else step
        if model_id is not None:
            model_id = self.check_model_id(model_id)  # before the value is logged: a bad id logs nothing
        self._handle(run_id).log_metric(key, value, step, timestamp)
        if model_id is not None:
            self.link_model_metrics(run_id, model_id, [(key, step)])

    def check_model_id(self, model_id: str) -> str:
        """``model_id`` if it names a logged model of the store; refused otherwise."""
        from casstore.models.fetch import load_entry

        model_id = check_digest(str(model_id), "model_id (a logged model's id, as log_model's info.model_id gives it)")
        if model_id not in self._models_seen:
            load_entry(self.store, model_id)
            self._models_seen.add(model_id)
        return model_id

    def link_model_metrics(self, run_id: str, model_id: str, points: Iterable[tuple[str, int]]) -> None:
        """Link metric values the run logged (``(key, step)``) to the logged model
        ``model_id`` (none: the run used the model, MLflow's model input): recorded in the
        run's ``casstore.model_metrics.<model_id>`` tag."""
        model_id = self.check_model_id(model_id)
        tag = MODEL_METRICS_TAG + model_id
        links = self._model_links.get((run_id, tag))
        changed = links is None
        if links is None:
            tags = self.store.get_run(run_id, flush=False, warn=False).tags
            links, changed = linked_steps(tags, model_id), tag not in tags
        changed = any([add_linked_step(links, key, step) for key, step in points]) or changed
        if changed:
            self._handle(run_id).set_tag(tag, json.dumps(links, sort_keys=True, separators=(",", ":")))
        self._model_links[(run_id, tag)] = links

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
        metrics = list(metrics)
        by_model: dict[str, list[tuple[str, int]]] = {}
        for m in metrics:
            if getattr(m, "model_id", None) is not None:
                by_model.setdefault(self.check_model_id(str(m.model_id)), []).append((m.key, m.step))
        self._handle(run_id).log_batch(ps, ts, [(m.key, m.value, m.step, m.timestamp) for m in metrics])
        for model_id, points in by_model.items():
            self.link_model_metrics(run_id, model_id, points)

    def set_tag(self, run_id: str, key: str, value: Any, synchronous: bool | None = None) -> None:
        self._handle(run_id).set_tag(key, str(value))

    def delete_tag(self, run_id: str, key: str) -> None:
        """Delete a tag of an open run (recorded; setting it again brings it back)."""
        self._handle(run_id).delete_tag(key)

    def get_parent_run(self, run_id: str) -> Run | None:
        """The run named by the run's ``mlflow.parentRunId`` tag (``None`` without one)."""
        parent = self.get_run(run_id).data.tags.get(MLFLOW_PARENT_RUN_ID)
        return None if parent is None else self.get_run(parent)

    def log_input(self, run_id: str, dataset: Any, context: str | None = None, tags: dict[str, str] | None = None) -> None:
        """Record a dataset (``casstore.data.from_pandas``/``from_numpy``) the run used, with
        its ``context`` (``"training"``, ``"eval"``, ...)."""
        to_dict = getattr(dataset, "to_dict", None)
        if not callable(to_dict) or not hasattr(dataset, "digest"):
            raise InvalidInputError(
                f"log_input takes a dataset from casstore.data.from_pandas or from_numpy, got {type(dataset).__name__}"
            )
        self._handle(run_id).log_input({**to_dict(), "context": context or "", "tags": dict(tags or {})})

    def log_inputs(self, run_id: str, datasets: Sequence[DatasetInput] | None = None, models: Sequence[Any] | None = None) -> None:
        """Record dataset inputs given as MLflow's ``DatasetInput`` entities, and logged models
        the run used (``LoggedModelInput``: ``run.inputs.model_inputs``)."""
        for m in models or []:
            self.link_model_metrics(run_id, getattr(m, "model_id", m), [])
        h = self._handle(run_id)
        for di in datasets or []:
            tags = {t.key: t.value for t in di.tags}
            context = tags.pop(CONTEXT_TAG, "")
            d = di.dataset
            h.log_input({"name": d.name, "digest": d.digest, "source_type": d.source_type, "source": d.source,
                         "schema": d.schema, "profile": d.profile, "context": context, "tags": tags})

    def get_metric_history(self, run_id: str, key: str) -> PagedList[Metric]:
        """Every value logged for a metric, by step then time (one page, as MLflow's)."""
        view = self.store.get_run(run_id)
        return PagedList([Metric(key, v, t, s, run_id=view.run_id) for v, s, t in view.metric_history(key)], None)

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

    def log_table(self, run_id: str, data: Any, artifact_file: str) -> None:
        """Log a DataFrame (or a dict of columns) as a table artifact (``.json`` in pandas'
        ``split`` form, or ``.parquet``), as MLflow 3, and list it in ``mlflow.loggedArtifacts``.
        A table file is bound once: where MLflow appends the rows of a second log to the
        same file, casstore refuses other content there (log it under another file)."""
        payload = _artifacts.table_bytes(data, artifact_file)
        h = self._handle(run_id)
        h.log_bytes(artifact_file, payload)
        listed = json.loads(self.get_run(run_id).data.tags.get(LOGGED_ARTIFACTS_TAG, "[]"))
        entry = {"path": artifact_file, "type": "table"}
        if entry not in listed:
            h.set_tag(LOGGED_ARTIFACTS_TAG, json.dumps([*listed, entry]))

    def load_table(
        self, experiment_id: str, artifact_file: str, run_ids: list[str] | None = None,
        extra_columns: list[str] | None = None,
    ) -> Any:
        """The rows of the table ``artifact_file`` of every run (of ``run_ids``, or of the
        experiment's runs that logged it) as one DataFrame; ``extra_columns`` (such as
        ``run_id``) add run attributes to each row."""
        pd = _artifacts.pandas_for("load_table")
        if run_ids is None:
            runs = [r for r in self.search_runs([experiment_id], max_results=100_000)
                    if {"path": artifact_file, "type": "table"} in json.loads(r.data.tags.get(LOGGED_ARTIFACTS_TAG, "[]"))]
            run_ids = [r.info.run_id for r in runs]
        frames = []
        for rid in run_ids:
            view = self.store.get_run(rid)
            entry = view.artifacts.get(artifact_file)
            if entry is None:
                continue
            frame = _artifacts.read_table(self.store.artifact_bytes(rid, entry), artifact_file)
            for col in extra_columns or []:
                if col != "run_id":
                    raise InvalidInputError(f"load_table: unknown extra column {col!r}; casstore adds 'run_id'")
                frame[col] = rid
            frames.append(frame)
        if not frames:
            raise ObjectNotFoundError(f"no run of experiment {experiment_id} has a table {artifact_file!r}")
        return pd.concat(frames, ignore_index=True)

    # ---- logged models (MLflow 3) ------------------------------------------------------

    def get_logged_model(self, model_id: str) -> LoggedModel:
        """The model with this id (its model digest), with the params of its run and the
        run's metrics at the model's step (``log_model(step=...)``, 0 by default)."""
        from casstore.models.fetch import load_entry

        entry = load_entry(self.store, check_digest(model_id, "model_id (a model digest)"))
        if entry.run_id is None:
            raise ObjectNotFoundError(f"model {model_id} was not logged in a run of store {self.store.url}")
        linking = self.store.search_runs(None, f"tags.`{MODEL_METRICS_TAG}{model_id}` IS NOT NULL", deleted=None)
        others = [self.store.get_run(r.run_id) for r in linking if r.run_id != entry.run_id]
        return _logged_model(self.store.get_run(entry.run_id), entry.name, model_id, entry, others=others)

    def search_logged_models(
        self, experiment_ids: list[str] | None = None, filter_string: str | None = None,
        max_results: int | None = None, order_by: list[Any] | None = None,
    ) -> list[LoggedModel]:
        """Models logged by the runs of ``experiment_ids`` (all experiments without), in the
        order ``order_by`` gives (MLflow's ``{"field_name": "metrics.rmse", "ascending": True}``
        entries), else newest first, matching ``filter_string`` on ``name``, ``model_id``, ``source_run_id``,
        ``creation_timestamp``, ``model_type``, ``params.<key>`` or ``metrics.<key>`` (the
        run's, at the model's step)."""
        from casstore.models.fetch import load_entry

        keys = [_logged_model_order_key(o) for o in order_by or []]
        comps = parse_filter(filter_string, LOGGED_MODEL_ATTRIBUTES)
        found: list[LoggedModel] = []
        for found_run in self.store.search_runs(None if experiment_ids is None else [str(i) for i in experiment_ids]):
            view = self.store.get_run(found_run.run_id)  # a search result does not carry models or metric history
            for name, ref in sorted(view.models.items()):
                model = _logged_model(view, name, ref.digest, load_entry(self.store, ref.digest), ref.logged_at)
                if matches(comps, functools.partial(_logged_model_value, model)):
                    found.append(model)
        found.sort(key=lambda m: m.creation_timestamp, reverse=True)
        for entity, key, ascending in reversed(keys):  # a stable sort per key, the first key last
            present = [m for m in found if _logged_model_value(m, entity, key) is not None]
            present.sort(key=lambda m: _logged_model_value(m, entity, key), reverse=not ascending)
            found = present + [m for m in found if _logged_model_value(m, entity, key) is None]  # missing last
        return found if max_results is None else found[:max_results]

    def set_logged_model_tags(self, model_id: str, tags: dict[str, Any]) -> None:
        """Refused: a logged model's tags are part of its entry, which its digest pins."""
        raise InvalidInputError(
            f"cannot set tags of logged model {model_id}: its tags are part of its model entry, which the model "
            "digest pins (registry versions and run digests name it). Give tags to log_model(tags=...), or tag "
            "a registered version (set_model_version_tag)"
        )

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[FileInfo]:
        """Files (with size and BLAKE3 digest) and directories directly under ``path``."""
        return _artifacts.list_entries(self.store.get_run(run_id), path)

    def download_artifacts(self, run_id: str, path: str = "", dst_path: str | os.PathLike[str] | None = None) -> str:
        """Download an artifact file or directory (verified) into ``dst_path`` under its last
        name, as MLflow does; return its local path."""
        return _artifacts.download(self.store, self.store.get_run(run_id), path, dst_path)


#: what a logged-model search can name, and its type
LOGGED_MODEL_ATTRIBUTES = {
    "name": "str", "model_id": "str", "source_run_id": "str", "creation_timestamp": "num", "model_type": "str",
}


def _logged_model(view: Any, name: str, digest: str, entry: ModelEntry, logged_at: int | None = None,
                  others: Sequence[Any] = ()) -> LoggedModel:
    """The logged model; its metrics are its run's at its step, and those any run linked to
    it (``log_metric(..., model_id=...)``)."""
    if logged_at is None:
        logged_at = view.models[name].logged_at if name in view.models else view.start_time
    metrics: list[Metric] = []
    for run in (view, *others):
        links = linked_steps(run.tags, digest)
        for k, v, s, t in run.points:
            at_step = run is view and s == entry.step
            if at_step or any(lo <= s <= hi for lo, hi in links.get(k, ())):
                metrics.append(Metric(k, v, t, s, model_id=digest, run_id=run.run_id))
    return LoggedModel(
        model_id=digest, name=name, experiment_id=view.experiment_id, source_run_id=view.run_id,
        creation_timestamp=int(logged_at or view.start_time), tags=dict(entry.tags), params=dict(view.params),
        metrics=metrics, model_type=entry.model_type,
    )


def _logged_model_order_key(order: Any) -> tuple[str, str, bool]:
    """An ``order_by`` entry of ``search_logged_models``: MLflow's ``{"field_name": ...,
    "ascending": ...}`` or a string such as ``"metrics.rmse ASC"``; (entity, key, ascending)."""
    if isinstance(order, dict):
        field_name, ascending = order.get("field_name"), order.get("ascending", True)
    elif isinstance(order, str) and order.strip():
        field_name, _, direction = order.strip().partition(" ")
        ascending = direction.strip().upper() != "DESC"
    else:
        field_name, ascending = None, True
    if not isinstance(field_name, str) or not isinstance(ascending, bool):
        raise InvalidInputError(
            f"search_logged_models: bad order_by entry {order!r}; give {{'field_name': 'creation_timestamp', "
            "'ascending': False}} or 'metrics.<key> DESC'"
        )
    entity, dot, key = field_name.partition(".")
    if dot and entity in ("metrics", "params", "tags"):
        return entity, key, ascending
    if field_name not in LOGGED_MODEL_ATTRIBUTES:
        raise InvalidInputError(f"search_logged_models: cannot order by {field_name!r}; order by "
                                f"{', '.join(LOGGED_MODEL_ATTRIBUTES)} or metrics.<key>, params.<key>, tags.<key>")
    return "attributes", field_name, ascending


def _logged_model_value(m: LoggedModel, entity: str, key: str) -> Any:
    if entity == "params":
        return m.params.get(key)
    if entity == "metrics":
        latest = [x for x in m.metrics if x.key == key]
        return max(latest, key=lambda x: (x.step, x.timestamp)).value if latest else None
    if entity == "tags":
        return m.tags.get(key)
    return getattr(m, key, None)


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


def new_run_tags(tags: dict[str, Any] | None, run_name: str | None) -> tuple[str, dict[str, str]]:
    """The name and tags of a new run, as the API gives them (``casstore log`` too): the
    reproducibility context, then ``tags``, and ``mlflow.runName``: ``run_name``, else the
    one ``tags`` give, else a random name as MLflow picks one."""
    all_tags = context_tags()
    all_tags.update({k: str(v) for k, v in (tags or {}).items()})
    name = run_name or all_tags.get(MLFLOW_RUN_NAME) or _random_name()
    all_tags[MLFLOW_RUN_NAME] = name
    return name, all_tags


def _random_name() -> str:
    import random

    return f"{random.choice(_ADJ)}-{random.choice(_NOUN)}-{random.randint(100, 999)}"


# ---- Client: the tracking methods, plus the registry's (mixed in below) ----------------------


class Client(RegistryClient, TrackingClient):
    """MLflow's ``MlflowClient``: tracking methods, and registry methods where installed."""


MlflowClient = Client
