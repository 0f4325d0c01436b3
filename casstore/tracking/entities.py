"""MLflow-shaped objects the tracking API returns: ``Run``, ``RunInfo``, ``RunData``,
``FileInfo``, ``Metric``, ``Param``, ``RunTag``, ``RunStatus``, ``ViewType``.

Field names follow MLflow's, so code written against ``mlflow.entities`` reads
them unchanged; casstore adds the run digest (``RunInfo.digest``) and the BLAKE3
digest of each artifact (``FileInfo.digest``). ``ActiveRun``, the run ``start_run``
returns, is the fluent API's (:mod:`casstore.tracking.fluent`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from casstore.runs import Experiment, RunView

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
]


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


class ViewType:
    """Which runs a search returns: active, deleted, or all."""

    ACTIVE_ONLY = 1
    DELETED_ONLY = 2
    ALL = 3


@dataclass(frozen=True)
class RunInfo:
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
class RunData:
    params: dict[str, str] = field(default_factory=dict)
    #: latest value of each metric
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


class Run:
    """A run: ``info`` (identity, status, times, digest) and ``data`` (params, metrics, tags)."""

    def __init__(self, run_info: RunInfo, run_data: RunData) -> None:
        self._info = run_info
        self._data = run_data

    @property
    def info(self) -> RunInfo:
        return self._info

    @property
    def data(self) -> RunData:
        return self._data

    def to_dictionary(self) -> dict[str, Any]:
        return {"info": asdict(self._info), "data": asdict(self._data)}

    def __repr__(self) -> str:
        return f"<Run: run_id={self._info.run_id!r}, status={self._info.status!r}, digest={self._info.digest!r}>"

    @classmethod
    def from_view(cls, view: RunView) -> Run:
        return cls(run_info(view), RunData(dict(view.params), dict(view.metrics), dict(view.tags)))


def run_info(view: RunView) -> RunInfo:
    return RunInfo(
        run_id=view.run_id,
        run_name=view.run_name,
        experiment_id=view.experiment_id,
        user_id=view.tags.get("mlflow.user", ""),
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
    key: str
    value: float
    timestamp: int
    step: int


@dataclass(frozen=True)
class Param:
    key: str
    value: str


@dataclass(frozen=True)
class RunTag:
    key: str
    value: str
