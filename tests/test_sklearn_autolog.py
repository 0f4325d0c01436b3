"""casstore's scikit-learn autologging: the model it logs, datasets, nesting, failures."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

import casstore

from tracking_helpers import tracking  # noqa: F401  (fixture)


@pytest.fixture
def autolog(tracking: str) -> Iterator[None]:
    casstore.autolog(log_input_examples=True)
    yield
    casstore.autolog(disable=True)


def test_the_fitted_model_is_logged_with_signature_and_example(autolog: None) -> None:
    from sklearn.datasets import load_iris
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    X, y = load_iris(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), DecisionTreeClassifier(max_depth=2, random_state=0))
    with casstore.start_run() as run:
        pipe.fit(X, y)
    got = casstore.get_run(run.info.run_id)
    assert got.data.tags["estimator_name"] == "Pipeline"
    assert got.data.params["decisiontreeclassifier__max_depth"] == "2"
    assert "model" in casstore.MlflowClient().store.get_run(run.info.run_id).models
    model = casstore.sklearn.load_model(f"runs:/{run.info.run_id}/model")
    assert (model.predict(X) == pipe.predict(X)).all()
    info = casstore.pyfunc.load_model(f"runs:/{run.info.run_id}/model").metadata
    assert info.signature is not None and info.saved_input_example_info is not None
    [ds] = got.inputs.dataset_inputs
    assert {t.key: t.value for t in ds.tags}["mlflow.data.context"] == "train"
    assert ds.dataset.digest == casstore.data.from_numpy(X, targets=y).digest


def test_only_the_outermost_fit_is_logged(autolog: None) -> None:
    from sklearn.datasets import load_iris
    from sklearn.model_selection import GridSearchCV
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    search = GridSearchCV(LogisticRegression(max_iter=300), {"C": [0.1, 1.0]}, cv=2)
    with casstore.start_run() as parent:
        search.fit(X, y)
    runs = casstore.search_runs(output_format="list")
    assert len(runs) == 3  # the search and its two candidates, not one run per inner fit
    store = casstore.MlflowClient().store
    assert set(store.get_run(parent.info.run_id).models) == {"model", "best_estimator"}
    best = casstore.sklearn.load_model(f"runs:/{parent.info.run_id}/best_estimator")
    assert best.get_params()["C"] == search.best_params_["C"]


def test_a_failing_fit_fails_its_own_run_and_raises(autolog: None) -> None:
    from sklearn.linear_model import LinearRegression

    with pytest.raises(ValueError):
        LinearRegression().fit(np.array([[1.0], [np.nan]]), [1.0, 2.0])
    [run] = casstore.search_runs(output_format="list")
    assert run.info.status == "FAILED"


def test_a_refused_log_warns_and_training_goes_on(autolog: None) -> None:
    from sklearn.linear_model import Ridge

    X, y = np.arange(8.0).reshape(-1, 1), np.arange(8.0)
    with casstore.start_run():
        Ridge(alpha=1.0).fit(X, y)
        with pytest.warns(UserWarning, match="could not record everything"):
            fitted = Ridge(alpha=2.0).fit(X, y)  # the run holds alpha=1.0: params are bound once
    assert fitted.coef_.shape == (1,)
