"""Run one test body against MLflow and against casstore (``import casstore as mlflow``).

The ``ml`` fixture is parametrized: ``mlflow`` is the real MLflow, tracking into one
``sqlite:///<tmp>/mlflow.db`` per session (its schema takes seconds to create); ``casstore``
tracks into a fresh store. Each test gets an experiment of its own, made active, so tests
never see each other's runs. ``ml.IS_CASSTORE`` tells the two apart where casstore differs
by design (documented in docs/coming-from-mlflow.md).
"""

from __future__ import annotations

import os
import types
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

import casstore
from casstore.tracking import fluent, uri

IMPLS = ["mlflow", "casstore"]


@pytest.fixture(scope="session")
def mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"


class Impl(types.SimpleNamespace):
    """The module under test, and what a test needs to know about it."""


def _quiet() -> warnings.catch_warnings:  # type: ignore[type-arg]
    """MLflow's own warnings (deprecations, its pickle advice) are not under test."""
    w = warnings.catch_warnings()
    w.__enter__()
    warnings.simplefilter("ignore")
    return w


@pytest.fixture(params=IMPLS)
def ml(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_db: str) -> Iterator[types.ModuleType]:
    """``mlflow`` or ``casstore``, with a fresh active experiment and no active run."""
    monkeypatch.chdir(tmp_path)
    for var in ("MLFLOW_TRACKING_URI", "CASSTORE_TRACKING_URI", "MLFLOW_RUN_ID", "CASSTORE_RUN_ID",
                "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"):
        monkeypatch.delenv(var, raising=False)
    name = f"compat-{uuid.uuid4().hex[:12]}"
    if request.param == "mlflow":
        import mlflow

        w = _quiet()
        monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")  # loading the models these tests log
        mlflow.set_tracking_uri(mlflow_db)
        mlflow.set_experiment(name)
        monkeypatch.setattr(mlflow, "IS_CASSTORE", False, raising=False)
        try:
            yield mlflow
        finally:
            while mlflow.active_run() is not None:
                mlflow.end_run()
            mlflow.tracking.fluent._active_experiment_id = None
            for var in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
                os.environ.pop(var, None)  # MLflow's set_tracking_uri/set_experiment wrote them
            w.__exit__(None, None, None)
    else:
        fluent._reset()
        casstore.set_tracking_uri(str(tmp_path / "store"))
        casstore.set_experiment(name)
        monkeypatch.setattr(casstore, "IS_CASSTORE", True, raising=False)
        try:
            yield casstore
        finally:
            while casstore.active_run() is not None:
                casstore.end_run()
            fluent._reset()
            uri._reset_tracking_uri()


def error_code(e: BaseException) -> str:
    return str(getattr(e, "error_code", ""))
