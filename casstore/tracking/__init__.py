"""The tracking API: MLflow's fluent functions and client over the runs layer."""

from __future__ import annotations

from casstore.tracking.client import Client, MlflowClient, TrackingClient
from casstore.tracking.entities import FileInfo, Metric, Param, Run, RunData, RunInfo, RunStatus, RunTag, ViewType
from casstore.tracking.fluent import *  # noqa: F403
from casstore.tracking.fluent import ActiveRun
from casstore.tracking.fluent import __all__ as _fluent_all
from casstore.tracking.uri import get_registry_uri, get_tracking_uri, is_tracking_uri_set, set_registry_uri, set_tracking_uri

__all__ = [
    *_fluent_all,
    "Client",
    "MlflowClient",
    "TrackingClient",
    "ActiveRun",
    "FileInfo",
    "Metric",
    "Param",
    "Run",
    "RunData",
    "RunInfo",
    "RunStatus",
    "RunTag",
    "ViewType",
    "get_tracking_uri",
    "set_tracking_uri",
    "is_tracking_uri_set",
    "set_registry_uri",
    "get_registry_uri",
]
