"""casstore: a content-addressed, verified, deduplicated artifact store for ML runs.

``import casstore as mlflow`` gives MLflow's tracking API over a store where every
artifact is named by its BLAKE3 digest, bound once, and verified on every read.
"""

from __future__ import annotations

__version__ = "0.1.0"

from casstore import exceptions
from casstore.runs import Experiment
from casstore.tracking.client import Client, MlflowClient
from casstore.tracking.entities import (
    FileInfo,
    Metric,
    Param,
    Run,
    RunData,
    RunInfo,
    RunStatus,
    RunTag,
    ViewType,
)
from casstore.tracking.fluent import (
    ActiveRun,
    active_run,
    create_experiment,
    delete_run,
    end_run,
    get_artifact_uri,
    get_experiment,
    get_experiment_by_name,
    get_metric_history,
    get_run,
    last_active_run,
    list_artifacts,
    log_artifact,
    log_artifacts,
    log_dict,
    log_figure,
    log_image,
    log_metric,
    log_metrics,
    log_param,
    log_params,
    log_text,
    search_experiments,
    search_runs,
    set_experiment,
    set_tag,
    set_tags,
    start_run,
)
from casstore.tracking.uri import get_tracking_uri, set_tracking_uri

from casstore import artifacts  # noqa: E402  (needs the tracking API above)

__all__ = [
    "__version__",
    # modules
    "artifacts",
    "exceptions",
    # store selection
    "set_tracking_uri",
    "get_tracking_uri",
    # experiments
    "set_experiment",
    "create_experiment",
    "get_experiment",
    "get_experiment_by_name",
    "search_experiments",
    # runs
    "start_run",
    "end_run",
    "active_run",
    "last_active_run",
    "get_run",
    "delete_run",
    "search_runs",
    # params, metrics, tags
    "log_param",
    "log_params",
    "log_metric",
    "log_metrics",
    "get_metric_history",
    "set_tag",
    "set_tags",
    # artifacts
    "log_artifact",
    "log_artifacts",
    "log_text",
    "log_dict",
    "log_figure",
    "log_image",
    "list_artifacts",
    "get_artifact_uri",
    # entities and the client
    "ActiveRun",
    "Experiment",
    "FileInfo",
    "Metric",
    "Param",
    "Run",
    "RunData",
    "RunInfo",
    "RunStatus",
    "RunTag",
    "ViewType",
    "Client",
    "MlflowClient",
]

# ---- models and registry (casstore.models, casstore.registry) --------------------------------
from casstore import models, pyfunc, sklearn  # noqa: E402
from casstore.registry.fluent import register_model  # noqa: E402

__all__ += ["models", "pyfunc", "sklearn", "register_model"]
# ---- end of models and registry ----------------------------------------------------------------
