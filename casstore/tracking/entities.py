"""MLflow-shaped objects the tracking API returns: ``Run``, ``RunInfo``, ``RunData``,
``FileInfo``, ``Metric``, ``Param``, ``RunTag``, ``RunStatus``, ``ViewType``.

Field names follow MLflow's, so code written against ``mlflow.entities`` reads
them unchanged; casstore adds the run digest (``RunInfo.digest``) and the BLAKE3
digest of each artifact (``FileInfo.digest``). ``ActiveRun``, the run ``start_run``
returns, is the fluent API's (:mod:`casstore.tracking.fluent`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from casstore.exceptions import InvalidInputError

from casstore.runs import Experiment, RunView
from casstore.runs.search import PagedList
from casstore.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT, MLFLOW_USER

__all__ = [
    "Run",
    "RunInfo",
    "RunData",
    "FileInfo",
    "Metric",
    "Param",
    "RunTag",
    "RunStatus",
    "ViewType",
    "Experiment",
    "PagedList",
    "DatasetEntity",
    "InputTag",
    "DatasetInput",
    "RunInputs",
    "RunOutputs",
    "LoggedModel",
    "LoggedModelInput",
    "LoggedModelOutput",
]

#: the input tag MLflow keeps a dataset's context in ("training", "eval", ...)
CONTEXT_TAG = MLFLOW_DATASET_CONTEXT

#: the run tag (``casstore.model_metrics.<model_id>``) linking the metrics the run logged with
#: ``model_id=`` to that logged model; its value maps each metric key to the ranges of steps
#: linked, ``{"rmse": [[0, 0]], "loss": [[1, 99]]}``
MODEL_METRICS_TAG = "casstore.model_metrics."


def linked_model_ids(tags: dict[str, str]) -> list[str]:
    """The models a run's tags link metrics to, in order of their ids."""
    return sorted(k[len(MODEL_METRICS_TAG):] for k in tags if k.startswith(MODEL_METRICS_TAG))


def linked_steps(tags: dict[str, str], model_id: str) -> dict[str, list[list[int]]]:
    """The metric keys a run linked to ``model_id``, each with its step ranges."""
    raw = tags.get(MODEL_METRICS_TAG + model_id)
    if not raw:
        return {}
    try:
        links = json.loads(raw)
    except json.JSONDecodeError:
        return {}
    return links if isinstance(links, dict) else {}


def add_linked_step(links: dict[str, list[list[int]]], key: str, step: int) -> bool:
    """Link ``step`` of ``key`` (merging ranges); whether anything changed."""
    ranges = links.setdefault(key, [])
    if any(lo <= step <= hi for lo, hi in ranges):
        return False
    ranges.append([step, step])
    ranges.sort()
    merged: list[list[int]] = []
    for lo, hi in ranges:
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    links[key] = merged
    return True


@dataclass(frozen=True)
class DatasetEntity:
    """A dataset as a run records it (MLflow's ``mlflow.entities.Dataset``); ``digest`` is
    the BLAKE3 of its content."""

    name: str
    digest: str
    source_type: str
    source: str
    schema: str = ""
    profile: str = ""


@dataclass(frozen=True)
class InputTag:
    key: str
    value: str


@dataclass(frozen=True)
class DatasetInput:
    """A dataset a run used, and its tags (``mlflow.data.context`` holds the context)."""

    dataset: DatasetEntity
    tags: list[InputTag] = field(default_factory=list)


@dataclass(frozen=True)
class LoggedModelInput:
    """A logged model a run used: one of another run whose metrics it logged
    (``log_metric(..., model_id=...)``)."""

    model_id: str

    def to_dictionary(self) -> dict[str, Any]:
        return {"model_id": self.model_id}


@dataclass(frozen=True)
class LoggedModelOutput:
    """A model the run logged (``log_model``), and the step it was logged at."""

    model_id: str
    step: int

    def to_dictionary(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "step": self.step}


@dataclass(frozen=True)
class RunInputs:
    """What a run used: ``dataset_inputs`` (``log_input``) and ``model_inputs`` (models of
    other runs it logged metrics of)."""

    dataset_inputs: list[DatasetInput] = field(default_factory=list)
    model_inputs: list[LoggedModelInput] = field(default_factory=list)


@dataclass(frozen=True)
class RunOutputs:
    """What a run made: ``model_outputs``, the models it logged (MLflow 3's)."""

    model_outputs: list[LoggedModelOutput] = field(default_factory=list)

    def to_dictionary(self) -> dict[str, Any]:
        return {"model_outputs": [o.to_dictionary() for o in self.model_outputs]}


def dataset_input(rec: dict[str, Any]) -> DatasetInput:
    """A dataset input record of the runs layer as MLflow's entity."""
    ds = DatasetEntity(rec["name"], rec["digest"], rec["source_type"], rec["source"], rec["schema"], rec["profile"])
    tags = [InputTag(CONTEXT_TAG, rec["context"])] if rec.get("context") else []  # first, as MLflow lists it
    tags += [InputTag(k, v) for k, v in sorted(rec.get("tags", {}).items())]
    return DatasetInput(ds, tags)

class RunStatus:
    """Run statuses (MLflow's names)."""

    RUNNING = "RUNNING"
    SCHEDULED = "SCHEDULED"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"

    @staticmethod
    def is_terminated(status: str) -> bool:
        return status in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED)

    @staticmethod
    def all_status() -> list[str]:
        return ["RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"]

    @staticmethod
    def to_string(status: str | int) -> str:
        """The status's name (MLflow's statuses are numbers; casstore's are their names)."""
        if isinstance(status, int) and not isinstance(status, bool) and 1 <= status <= 5:
            return RunStatus.all_status()[status - 1]
        if status in RunStatus.all_status():
            return str(status)
        raise InvalidInputError(f"could not get the string of run status {status!r}; it is one of {RunStatus.all_status()}")

    @staticmethod
    def from_string(status_str: str) -> str:
        """The status named ``status_str`` (as casstore keeps it: the name)."""
        if status_str not in RunStatus.all_status():
            raise InvalidInputError(f"could not get run status for {status_str!r}; it is one of {RunStatus.all_status()}")
        return status_str


class ViewType:
    """Which runs a search returns: active, deleted, or all."""

    ACTIVE_ONLY = 1
    DELETED_ONLY = 2
    ALL = 3
    _NAMES = {1: "active_only", 2: "deleted_only", 3: "all"}

    @classmethod
    def to_string(cls, view_type: int) -> str:
        """MLflow's name of a view type: ``"active_only"``, ``"deleted_only"`` or ``"all"``."""
        if view_type not in cls._NAMES:
            raise InvalidInputError(f"unknown view type {view_type!r}; it is one of {sorted(cls._NAMES)} (ViewType.ACTIVE_ONLY ...)")
        return cls._NAMES[view_type]

    @classmethod
    def from_string(cls, view_str: str) -> int:
        """The view type named ``view_str`` (``"active_only"``, ``"deleted_only"``, ``"all"``)."""
        for number, name in cls._NAMES.items():
            if name == view_str:
                return number
        raise InvalidInputError(f"unknown view type {view_str!r}; it is one of {sorted(cls._NAMES.values())}")


class _Iterable:
    """``dict(run.info)``, ``dict(run.data)``: (name, value) pairs, as MLflow's entities give."""

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return iter(asdict(self).items())  # type: ignore[call-overload]


@dataclass(frozen=True)
class RunInfo(_Iterable):
    run_id: str
    run_name: str
    experiment_id: str
    user_id: str
    status: str
    start_time: int
    end_time: int | None
    artifact_uri: str
    lifecycle_stage: str
    #: the run digest: BLAKE3 of the sealed manifest (``None`` while the run is open)
    digest: str | None = None

    @property
    def run_uuid(self) -> str:
        return self.run_id


@dataclass(frozen=True)
class RunData(_Iterable):
    #: by name, the same order while the run is active and once it is sealed
    params: dict[str, str] = field(default_factory=dict)
    #: latest value of each metric
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


class Run:
    """A run: ``info`` (identity, status, times, digest), ``data`` (params, metrics, tags),
    ``inputs`` (the datasets and other runs' models it used) and ``outputs`` (the models it
    logged; read when first asked for)."""

    def __init__(self, run_info: RunInfo, run_data: RunData, run_inputs: RunInputs | None = None,
                 run_outputs: RunOutputs | Callable[[], RunOutputs] | None = None) -> None:
        self._info = run_info
        self._data = run_data
        self._inputs = run_inputs or RunInputs()
        self._outputs = run_outputs or RunOutputs()

    @property
    def inputs(self) -> RunInputs:
        return self._inputs

    @property
    def outputs(self) -> RunOutputs:
        if callable(self._outputs):
            self._outputs = self._outputs()
        return self._outputs

    @property
    def info(self) -> RunInfo:
        return self._info

    @property
    def data(self) -> RunData:
        return self._data

    def to_dictionary(self) -> dict[str, Any]:
        """MLflow's shape: ``info``, ``data`` and ``inputs`` (a dataset input's tags as a dict)."""
        datasets = [{"dataset": asdict(i.dataset), "tags": {t.key: t.value for t in i.tags}}
                    for i in self._inputs.dataset_inputs]
        inputs = {"model_inputs": list(self._inputs.model_inputs), "dataset_inputs": datasets}
        return {"info": asdict(self._info), "data": asdict(self._data), "inputs": inputs,
                "outputs": self.outputs.to_dictionary()}

    def __repr__(self) -> str:
        return f"<Run: run_id={self._info.run_id!r}, status={self._info.status!r}, digest={self._info.digest!r}>"

    @classmethod
    def from_view(cls, view: RunView, outputs: Callable[[], RunOutputs] | None = None) -> Run:
        """The run a view holds; ``outputs`` reads its models' outputs when asked for."""
        own = {ref.digest for ref in view.models.values()}
        used = [LoggedModelInput(m) for m in linked_model_ids(view.tags) if m not in own]
        inputs = RunInputs([dataset_input(i) for i in view.inputs], used)
        data = RunData(dict(sorted(view.params.items())), dict(view.metrics), dict(view.tags))
        return cls(run_info(view), data, inputs, outputs)


def run_info(view: RunView) -> RunInfo:
    return RunInfo(
        run_id=view.run_id,
        run_name=view.run_name,
        experiment_id=view.experiment_id,
        user_id=view.tags.get(MLFLOW_USER, ""),
        status=view.status,
        start_time=view.start_time,
        end_time=view.end_time,
        artifact_uri=view.artifact_uri,
        lifecycle_stage="deleted" if view.deleted else "active",
        digest=view.digest,
    )


@dataclass(frozen=True)
class FileInfo:
    """An entry of ``list_artifacts``: a file (with size and BLAKE3 digest) or a directory."""

    path: str
    is_dir: bool
    file_size: int | None
    digest: str | None = None


@dataclass(frozen=True)
class Metric:
    """One logged value of a metric; ``run_id`` is set on what ``get_metric_history`` gives."""

    key: str
    value: float
    timestamp: int
    step: int
    #: the logged model the value is linked to (``log_metric(..., model_id=...)``)
    model_id: str | None = None
    dataset_name: str | None = None
    dataset_digest: str | None = None
    run_id: str | None = None

    def to_dictionary(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Param:
    key: str
    value: str


@dataclass(frozen=True)
class RunTag:
    key: str
    value: str


@dataclass(frozen=True)
class LoggedModel:
    """A model logged in a run, in the shape of MLflow 3's ``LoggedModel``: ``model_id`` is
    its model digest (``models:/<model_id>`` and ``cas:<model_id>`` load it); ``params``
    and ``metrics`` are those of the run that logged it."""

    model_id: str
    name: str
    experiment_id: str
    source_run_id: str
    creation_timestamp: int
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: list[Metric] = field(default_factory=list)
    status: str = "READY"
    model_type: str | None = None

    @property
    def model_uri(self) -> str:
        return f"models:/{self.model_id}"

    @property
    def artifact_location(self) -> str:
        return f"runs:/{self.source_run_id}/{self.name}"

    @property
    def last_updated_timestamp(self) -> int:
        return self.creation_timestamp

    def to_dictionary(self) -> dict[str, Any]:
        return asdict(self)
