"""casstore.evaluate: what MLflow's evaluate supports and casstore does not is refused with a
message saying what to do, before anything is logged. (The metrics themselves are checked
side by side with MLflow's in tests/test_compat_mlflow.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LinearRegression

import casstore
from casstore.exceptions import InvalidInputError
from casstore.tracking import fluent, uri


@pytest.fixture
def store(tmp_path: Path) -> Any:
    fluent._reset()
    casstore.set_tracking_uri(str(tmp_path / "store"))
    yield casstore
    while casstore.active_run() is not None:
        casstore.end_run()
    fluent._reset()
    uri._reset_tracking_uri()


def _frame() -> tuple[LinearRegression, pd.DataFrame]:
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    return LinearRegression().fit(X, y), X.assign(target=y)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"model_type": "question-answering"}, "model_type 'question-answering' is not supported"),
    ({"model_type": None}, "model_type None is not supported"),
    ({"extra_metrics": [object()]}, "extra_metrics= is not supported"),
    ({"custom_artifacts": [object()]}, "custom_artifacts= is not supported"),
    ({"evaluators": ["shap"]}, "evaluators="),
    ({"evaluator_config": {"sample_weights": [1.0]}}, r"evaluator_config\['sample_weights'\] is not supported"),
    ({"env_manager": "virtualenv"}, "env_manager"),
    ({"targets": "no-such"}, "targets= must name the label column"),
    ({"predictions": "no-such"}, "predictions='no-such' is not a column"),
])
def test_unsupported_arguments_are_refused_before_anything_is_logged(store: Any, kwargs: dict[str, Any], match: str) -> None:
    model, frame = _frame()
    with pytest.raises(InvalidInputError, match=match):
        casstore.evaluate(model.predict, frame, **{"targets": "target", "model_type": "regressor", **kwargs})
    assert casstore.active_run() is None and casstore.search_runs().empty


def test_bad_data_and_model_are_refused(store: Any) -> None:
    model, frame = _frame()
    with pytest.raises(InvalidInputError, match="data must be a pandas DataFrame"):
        casstore.evaluate(model.predict, {"a": 1}, targets="target", model_type="regressor")
    with pytest.raises(InvalidInputError, match="model must be a model URI"):
        casstore.evaluate(42, frame, targets="target", model_type="regressor")
    with pytest.raises(InvalidInputError, match="give a model, or predictions="):
        casstore.evaluate(None, frame, targets="target", model_type="regressor")
    single = frame.assign(target=1, p=1)
    with pytest.raises(InvalidInputError, match="at least two labels"):
        casstore.evaluate(data=single, predictions="p", targets="target", model_type="classifier")
    assert casstore.active_run() is None


def test_a_failing_model_leaves_the_run_it_started_failed(store: Any) -> None:
    _, frame = _frame()

    def broken(features: pd.DataFrame) -> None:
        raise RuntimeError("model broke")

    with pytest.raises(RuntimeError, match="model broke"):
        casstore.evaluate(broken, frame, targets="target", model_type="regressor")
    assert casstore.active_run() is None
    assert casstore.search_runs()["status"].tolist() == ["FAILED"]


def test_a_function_and_numpy_data(store: Any) -> None:
    _, frame = _frame()
    X, y = frame.drop(columns=["target"]).to_numpy(), frame["target"].to_numpy()
    model = LinearRegression().fit(X, y)
    result = casstore.evaluate(model.predict, X, targets=y, model_type="regressor")
    assert "score" not in result.metrics  # a bare function has no estimator to score
    assert result.metrics["r2_score"] == pytest.approx(model.score(X, y))
    assert casstore.get_run(result.run_id).data.metrics["example_count"] == len(y)
