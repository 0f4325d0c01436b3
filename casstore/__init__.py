"""casstore: a content-addressed, verified, deduplicated artifact store for ML runs.

``import casstore as mlflow`` gives MLflow's tracking API over a store where every
artifact is named by its BLAKE3 digest, bound once, and verified on every read.

The public names are loaded on first use (PEP 562): ``import casstore`` costs a few
milliseconds, and ``casstore.start_run`` imports the tracking API when it is first
asked for, so the ``casstore`` command and the layers below pay only for what they use.
"""

from __future__ import annotations

import os
import typing

from casstore import _lazy

__version__ = "0.1.0"

#: MLflow's MLFLOW_EXPERIMENT_ID / _NAME as the process had them when casstore was imported
#: (MLflow's own set_experiment writes them later, in a process that uses both); taken here,
#: not when the tracking API is first used
_MLFLOW_EXPERIMENT_ENV: tuple[str, str] | None = (
    ("id", os.environ["MLFLOW_EXPERIMENT_ID"]) if os.environ.get("MLFLOW_EXPERIMENT_ID")
    else ("name", os.environ["MLFLOW_EXPERIMENT_NAME"]) if os.environ.get("MLFLOW_EXPERIMENT_NAME") else None
)

if typing.TYPE_CHECKING:  # what each public name is, for type checkers; loaded lazily at run time
    from casstore import artifacts, data, entities, exceptions, models, pyfunc, sklearn, types
    from casstore.models.evaluation import evaluate
    from casstore.exceptions import MlflowException
    from casstore.registry.fluent import register_model
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
        RunOperations,
        active_run,
        create_experiment,
        delete_experiment,
        delete_experiment_tag,
        delete_run,
        delete_tag,
        end_run,
        flush_artifact_async_logging,
        flush_async_logging,
        get_artifact_uri,
        get_experiment,
        get_experiment_by_name,
        get_logged_model,
        get_metric_history,
        get_parent_run,
        get_run,
        last_active_run,
        last_logged_model,
        list_artifacts,
        load_table,
        log_artifact,
        log_artifacts,
        log_dict,
        log_figure,
        log_image,
        log_input,
        log_inputs,
        log_metric,
        log_metrics,
        log_param,
        log_params,
        log_table,
        log_text,
        restore_experiment,
        restore_run,
        search_experiments,
        search_logged_models,
        search_model_versions,
        search_registered_models,
        search_runs,
        set_experiment,
        set_experiment_tag,
        set_experiment_tags,
        set_logged_model_tags,
        set_model_version_tag,
        set_tag,
        set_tags,
        start_run,
    )
    from casstore.tracking.uri import get_registry_uri, get_tracking_uri, is_tracking_uri_set, set_registry_uri, set_tracking_uri
__all__ = [
    "__version__",
    # modules
    "artifacts",
    "data",
    "entities",
    "exceptions",
    # store selection
    "set_tracking_uri",
    "get_tracking_uri",
    "is_tracking_uri_set",
    "set_registry_uri",
    "get_registry_uri",
    "MlflowException",
    # experiments
    "set_experiment",
    "create_experiment",
    "get_experiment",
    "get_experiment_by_name",
    "search_experiments",
    "set_experiment_tag",
    "set_experiment_tags",
    "delete_experiment",
    "restore_experiment",
    "delete_experiment_tag",
    # runs
    "start_run",
    "end_run",
    "active_run",
    "last_active_run",
    "get_run",
    "delete_run",
    "search_runs",
    "get_parent_run",
    "restore_run",
    "flush_async_logging",
    "flush_artifact_async_logging",
    "RunOperations",
    # params, metrics, tags
    "log_param",
    "log_params",
    "log_metric",
    "log_metrics",
    "get_metric_history",
    "set_tag",
    "set_tags",
    "delete_tag",
    # artifacts
    "log_artifact",
    "log_artifacts",
    "log_text",
    "log_dict",
    "log_figure",
    "log_image",
    "log_table",
    "load_table",
    "log_input",
    "log_inputs",
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
__all__ += ["models", "pyfunc", "sklearn", "register_model", "search_registered_models", "search_model_versions", "set_model_version_tag",
            "get_logged_model", "last_logged_model", "search_logged_models", "set_logged_model_tags", "autolog",
            "types", "evaluate"]

# where each public name lives at run time: a submodule, or a module of the tracking API
if not typing.TYPE_CHECKING:  # hidden from type checkers, so a misspelt name stays an error there
    _public = _lazy.lazy_getattr(globals(), {
        **dict.fromkeys((n for n in __all__ if n not in ("__version__", "autolog")), "casstore.tracking.fluent"),
        **{name: f"casstore.{name}" for name in ("artifacts", "data", "entities", "exceptions", "models", "pyfunc", "sklearn",
                                                 "types")},
        "evaluate": "casstore.models.evaluation",
        "MlflowException": "casstore.exceptions",
        "register_model": "casstore.registry.fluent",
        "Experiment": "casstore.runs",
        **dict.fromkeys(("Client", "MlflowClient"), "casstore.tracking.client"),
        **dict.fromkeys(
            ("FileInfo", "Metric", "Param", "Run", "RunData", "RunInfo", "RunStatus", "RunTag", "ViewType"),
            "casstore.tracking.entities",
        ),
        **dict.fromkeys(
            ("get_registry_uri", "get_tracking_uri", "is_tracking_uri_set", "set_registry_uri", "set_tracking_uri"),
            "casstore.tracking.uri",
        ),
    })

    def __getattr__(name: str) -> typing.Any:
        try:
            return _public(name)
        except AttributeError:
            what = _NOT_PROVIDED.get(name) or (f"MLflow's {name} flavor" if name in _FLAVORS else None)
            if what is None:
                raise
            raise AttributeError(
                f"module 'casstore' has no attribute {name!r}: casstore does not provide {what}; it keeps MLflow's "
                "tracking, models (sklearn, pyfunc) and registry (see 'What differs' in docs/coming-from-mlflow.md)"
            ) from None

#: MLflow's names for what casstore leaves out, and what each is
_TRACING = "tracing"
_NOT_PROVIDED = {
    **dict.fromkeys(("trace", "get_trace", "search_traces", "start_span", "get_current_active_span",
                     "update_current_trace", "get_last_active_trace_id", "tracing"), _TRACING),
    "genai": "GenAI evaluation (mlflow.genai)",
    **dict.fromkeys(("projects", "run"), "MLflow projects"),
    **dict.fromkeys(("enable_system_metrics_logging", "disable_system_metrics_logging"), "system metrics"),
    **dict.fromkeys(("register_prompt", "load_prompt", "search_prompts"), "prompts"),
    **dict.fromkeys(("deployments", "gateway"), "deployments"),
    **dict.fromkeys(("set_active_model", "get_active_model_id", "clear_active_model"), "active models"),
}
_FLAVORS = {
    "pytorch", "tensorflow", "keras", "xgboost", "lightgbm", "catboost", "transformers", "sentence_transformers",
    "openai", "langchain", "llama_index", "spark", "statsmodels", "prophet", "onnx", "h2o", "spacy", "fastai",
    "paddle", "pmdarima", "diviner", "johnsnowlabs", "mleap", "dspy", "anthropic", "gemini", "bedrock",
}


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


def autolog(
    log_input_examples: bool = False,
    log_model_signatures: bool = True,
    log_models: bool = True,
    log_datasets: bool = True,
    disable: bool = False,
    exclusive: bool = False,
    disable_for_unsupported_versions: bool = False,
    silent: bool = False,
    extra_tags: dict[str, str] | None = None,
    exclude_flavors: list[str] | None = None,
) -> None:
    """Autologging for every library casstore has a flavor for (scikit-learn), as MLflow's
    ``mlflow.autolog``; ``disable=True`` turns it off."""
    import importlib.util

    if (exclude_flavors and "sklearn" in exclude_flavors) or importlib.util.find_spec("sklearn") is None:
        return  # as MLflow: a library that is not installed is not autologged
    from casstore import sklearn as flavor

    flavor.autolog(
        log_input_examples=log_input_examples, log_model_signatures=log_model_signatures, log_models=log_models,
        log_datasets=log_datasets, disable=disable, exclusive=exclusive,
        disable_for_unsupported_versions=disable_for_unsupported_versions, silent=silent, extra_tags=extra_tags,
    )
