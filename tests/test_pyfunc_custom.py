"""Custom python models (``casstore.pyfunc.PythonModel``), ``save_model`` and loading local
model directories: artifacts and code are files of the model, pinned and verified."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import casstore
from casstore.exceptions import IntegrityError, MlflowException, ResourceAlreadyExistsError

from tracking_helpers import corrupt_artifact, tracking, write  # noqa: F401  (fixture)


class AddN(casstore.pyfunc.PythonModel):
    def __init__(self, n: float) -> None:
        self.n = n

    def load_context(self, context: casstore.pyfunc.PythonModelContext) -> None:
        self.offset = float(Path(context.artifacts["offset"]).read_text())

    def predict(self, context: object, model_input: pd.DataFrame, params: dict[str, float] | None = None) -> pd.DataFrame:
        return model_input + self.n + self.offset + (params or {}).get("bonus", 0)


class NoContext(casstore.pyfunc.PythonModel):
    def predict(self, model_input: list[int], params: dict[str, int] | None = None) -> list[int]:
        return [x * 2 for x in model_input]


def test_log_and_load_custom_model_with_artifacts_code_and_params(tracking: str, tmp_path: Path) -> None:
    write(tmp_path / "offset.txt", "100")
    write(tmp_path / "helpers" / "scaling_helper.py", "FACTOR = 3\n")
    frame = pd.DataFrame({"a": [1.0, 2.0]})
    with casstore.start_run() as run:
        info = casstore.pyfunc.log_model(
            name="add_n", python_model=AddN(5), artifacts={"offset": str(tmp_path / "offset.txt")},
            code_paths=[str(tmp_path / "helpers" / "scaling_helper.py")], input_example=frame, registered_model_name="adder",
            signature=casstore.models.infer_signature(frame, frame, params={"bonus": 0.0}),
            pip_requirements=["pandas"],
        )
    assert info.model_uri == f"runs:/{run.info.run_id}/add_n" and info.registered_model_version == 1
    assert info.signature is not None and info.requirements == ["pandas"]
    files = {f.path for f in casstore.list_artifacts(run.info.run_id, "add_n")}
    assert {"add_n/python_model.pkl", "add_n/artifacts", "add_n/code", "add_n/MLmodel"} <= files
    for uri in (info.model_uri, "models:/adder/1", info.cas_uri):
        model = casstore.pyfunc.load_model(uri)
        assert model.predict(frame)["a"].tolist() == [106.0, 107.0]
        assert model.predict(frame, params={"bonus": 1000})["a"].tolist() == [1106.0, 1107.0]
        assert isinstance(model.unwrap_python_model(), AddN) and model.model_digest == info.model_digest
    import scaling_helper  # the model's code/ went on sys.path  # noqa: F401


def test_context_free_predict_and_functions_as_models(tracking: str) -> None:
    with casstore.start_run():
        a = casstore.pyfunc.log_model(name="double", python_model=NoContext())
        b = casstore.pyfunc.log_model(name="neg", python_model=lambda xs: [-x for x in xs])
    assert casstore.pyfunc.load_model(a.model_uri).predict([1, 2]) == [2, 4]
    assert casstore.pyfunc.load_model(b.model_uri).predict([1, 2]) == [-1, -2]


def test_tampered_custom_model_artifact_is_refused_before_unpickling(tracking: str, tmp_path: Path) -> None:
    write(tmp_path / "offset.txt", "1" * 100_000)  # large enough to be stored as content
    with casstore.start_run() as run:
        info = casstore.pyfunc.log_model(name="m", python_model=AddN(1), artifacts={"offset": str(tmp_path / "offset.txt")})
    store = casstore.Client().store
    corrupt_artifact(store, run.info.run_id, "m/artifacts/offset.txt")
    with pytest.raises(IntegrityError):
        casstore.pyfunc.load_model(info.model_uri)


def test_save_model_directory_is_verified_when_loaded(tmp_path: Path) -> None:
    write(tmp_path / "offset.txt", "10")
    digest = casstore.pyfunc.save_model(tmp_path / "saved", python_model=AddN(1), artifacts={"offset": str(tmp_path / "offset.txt")})
    assert sorted(os.listdir(tmp_path / "saved")) == [
        "MLmodel", "artifacts", "casstore-model.msgpack", "conda.yaml", "python_env.yaml", "python_model.pkl", "requirements.txt",
    ]
    model = casstore.pyfunc.load_model(str(tmp_path / "saved"))
    assert model.model_digest == digest
    assert model.predict(pd.DataFrame({"a": [0.0]}))["a"].tolist() == [11.0]
    # as MLflow: saving over an existing model directory is refused
    with pytest.raises(ResourceAlreadyExistsError) as e:
        casstore.pyfunc.save_model(tmp_path / "saved", python_model=AddN(2))
    assert e.value.error_code == "RESOURCE_ALREADY_EXISTS"
    (tmp_path / "saved" / "artifacts" / "offset.txt").write_text("99")
    with pytest.raises(IntegrityError, match="artifacts/offset.txt"):
        casstore.pyfunc.load_model(str(tmp_path / "saved"))


def test_sklearn_save_model_and_local_directory_loads(tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression

    X = np.arange(10.0).reshape(-1, 1)
    lr = LinearRegression().fit(X, 2 * X.ravel())
    casstore.sklearn.save_model(lr, tmp_path / "sk", input_example=X[:2])
    for uri in (str(tmp_path / "sk"), f"file://{tmp_path / 'sk'}"):
        assert casstore.sklearn.load_model(uri).predict([[3.0]]).tolist() == pytest.approx([6.0])
        assert casstore.pyfunc.load_model(uri).predict(np.array([[4.0]])).tolist() == pytest.approx([8.0])
    with pytest.raises(MlflowException) as e:
        casstore.sklearn.load_model(str(tmp_path / "nothing-here"))
    assert e.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_model_directories_cross_between_mlflow_and_casstore(tmp_path: Path) -> None:
    import mlflow  # in the test extra
    from sklearn.linear_model import LinearRegression

    X = np.arange(10.0).reshape(-1, 1)
    lr = LinearRegression().fit(X, 3 * X.ravel())
    with warnings.catch_warnings():  # MLflow's own warnings (pickle formats, type hints) are not under test
        warnings.simplefilter("ignore")
        mlflow.sklearn.save_model(lr, str(tmp_path / "by-mlflow"), serialization_format="cloudpickle")
    assert casstore.sklearn.load_model(str(tmp_path / "by-mlflow")).predict([[1.0]]).tolist() == pytest.approx([3.0])
    assert casstore.pyfunc.load_model(str(tmp_path / "by-mlflow")).predict(np.array([[2.0]])).tolist() == pytest.approx([6.0])
    casstore.sklearn.save_model(lr, tmp_path / "by-casstore")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = mlflow.sklearn.load_model(str(tmp_path / "by-casstore"))
    assert loaded.predict([[1.0]]).tolist() == pytest.approx([3.0])


def test_artifacts_given_as_run_uris_are_copied_into_the_model(tracking: str) -> None:
    with casstore.start_run() as source:
        casstore.log_text("7", "settings/offset.txt")
    with casstore.start_run():
        info = casstore.pyfunc.log_model(
            name="m", python_model=AddN(1), artifacts={"offset": f"runs:/{source.info.run_id}/settings/offset.txt"},
        )
    model = casstore.pyfunc.load_model(info.model_uri)
    assert model.predict(pd.DataFrame({"a": [0.0]}))["a"].tolist() == [8.0]
    conf = model.metadata.flavors["python_function"]["artifacts"]["offset"]
    assert conf == {"path": "artifacts/offset.txt", "uri": f"runs:/{source.info.run_id}/settings/offset.txt"}
