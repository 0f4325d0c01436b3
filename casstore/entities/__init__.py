"""``casstore.entities``: the objects the tracking API returns, under MLflow's module name
(``from mlflow.entities import RunStatus, Metric, ViewType`` becomes
``from casstore.entities import ...``)."""

from __future__ import annotations

from casstore.runs import Experiment
from casstore.tracking.entities import (
    DatasetEntity,
    DatasetInput,
    FileInfo,
    InputTag,
    LoggedModel,
    LoggedModelInput,
    LoggedModelOutput,
    Metric,
    Param,
    Run,
    RunData,
    RunInfo,
    RunInputs,
    RunOutputs,
    RunStatus,
    RunTag,
    ViewType,
)
from casstore.tracking.fluent import ActiveRun

__all__ = [
    "ActiveRun",
    "Dataset",
    "DatasetInput",
    "Experiment",
    "FileInfo",
    "InputTag",
    "LifecycleStage",
    "LoggedModel",
    "LoggedModelInput",
    "LoggedModelOutput",
    "Metric",
    "Param",
    "Run",
    "RunData",
    "RunInfo",
    "RunInputs",
    "RunOutputs",
    "RunStatus",
    "RunTag",
    "ViewType",
]

#: MLflow's name for a recorded dataset
Dataset = DatasetEntity


class LifecycleStage:
    """Whether a run or an experiment is active or deleted (MLflow's names)."""

    ACTIVE = "active"
    DELETED = "deleted"
