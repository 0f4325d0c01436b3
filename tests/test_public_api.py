"""``casstore.__all__`` is exactly the public surface, and it covers MLflow's tracking names."""

from __future__ import annotations

import __future__
import types

import casstore

TRACKING = {
    "set_tracking_uri", "get_tracking_uri", "set_experiment", "create_experiment", "get_experiment",
    "get_experiment_by_name", "search_experiments", "start_run", "end_run", "active_run", "last_active_run",
    "get_run", "delete_run", "search_runs", "log_param", "log_params", "log_metric", "log_metrics",
    "get_metric_history", "set_tag", "set_tags", "log_artifact", "log_artifacts", "log_text", "log_dict",
    "log_figure", "log_image", "list_artifacts", "get_artifact_uri", "ActiveRun", "Experiment", "FileInfo",
    "Metric", "Param", "Run", "RunData", "RunInfo", "RunStatus", "RunTag", "ViewType", "Client", "MlflowClient",
    "artifacts", "exceptions", "__version__",
}


def test_all_is_exactly_the_public_surface() -> None:
    for name in casstore.__all__:  # loaded on first use: each one loads
        assert hasattr(casstore, name), name
    assert set(casstore.__all__) <= set(dir(casstore))
    public = {
        name for name, value in vars(casstore).items()
        if not name.startswith("_")
        and not isinstance(value, __future__._Feature)  # `from __future__ import annotations`
        and not (isinstance(value, types.ModuleType) and name not in casstore.__all__)  # private submodules
    }
    public.add("__version__")
    assert len(casstore.__all__) == len(set(casstore.__all__)), "duplicates in __all__"
    assert set(casstore.__all__) == public


def test_tracking_names_are_exported() -> None:
    assert TRACKING <= set(casstore.__all__)


def test_mlflows_names_for_what_casstore_leaves_out_say_so() -> None:
    """``mlflow.trace`` or ``mlflow.pytorch`` in a script whose import changed: an
    AttributeError (so ``hasattr`` stays False) that names what is not provided."""
    import pytest

    for name, what in [("trace", "tracing"), ("genai", "GenAI evaluation"), ("pytorch", "MLflow's pytorch flavor")]:
        assert not hasattr(casstore, name)
        with pytest.raises(AttributeError, match=f"casstore does not provide {what}.*coming-from-mlflow"):
            getattr(casstore, name)
    with pytest.raises(AttributeError, match=r"^module 'casstore' has no attribute 'no_such_name'$"):
        casstore.no_such_name  # noqa: B018


def test_mlflow_import_pattern_works() -> None:
    import casstore as mlflow

    assert callable(mlflow.start_run) and callable(mlflow.artifacts.download_artifacts)
    assert issubclass(mlflow.exceptions.ImmutableArtifactError, mlflow.exceptions.MlflowException)


def test_a_misspelt_name_is_an_attribute_error() -> None:
    import pytest

    with pytest.raises(AttributeError, match="has no attribute 'start_runn'"):
        casstore.start_runn  # noqa: B018
    with pytest.raises(ImportError):
        from casstore import no_such_name  # noqa: F401
