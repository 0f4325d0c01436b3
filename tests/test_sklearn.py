"""The sklearn flavor: log_model, load_model, pyfunc, formats, files and the model entry."""

from __future__ import annotations

import os
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from tracking_helpers import tracking  # noqa: F401  (fixture)

import casstore
import casstore.sklearn
from casstore.exceptions import ImmutableArtifactError, InvalidInputError
from casstore.models import ModelSignature, TensorSpec, fetch, infer_signature
from casstore.models.entry import entry_digest
from casstore.objects import hash_bytes
from casstore.tracking.uri import get_store

X, Y = load_iris(return_X_y=True)


@pytest.fixture(scope="module")
def forest() -> RandomForestClassifier:
    return RandomForestClassifier(n_estimators=8, random_state=0).fit(X, Y)


def _entry(info: casstore.models.ModelInfo) -> dict:
    return get_store().load_model_entry(info.model_digest)


@pytest.mark.parametrize("fmt", ["cloudpickle", "pickle"])
def test_round_trip_predictions_equal_the_original(tracking: str, forest: RandomForestClassifier, fmt: str) -> None:
    with casstore.start_run():
        info = casstore.sklearn.log_model(forest, name="clf", serialization_format=fmt, registered_model_name="iris")
    casstore.Client().set_registered_model_alias("iris", "champion", 1)
    for uri in (info.model_uri, "models:/iris/1", "models:/iris/latest", "models:/iris@champion", info.cas_uri):
        raw = casstore.sklearn.load_model(uri)
        assert np.array_equal(raw.predict_proba(X), forest.predict_proba(X)), uri
        assert np.array_equal(casstore.pyfunc.load_model(uri).predict(X), forest.predict(X)), uri


def test_model_info_and_entry_describe_the_model(tracking: str, forest: RandomForestClassifier) -> None:
    sig = infer_signature(X, forest.predict(X))
    with casstore.start_run() as run:
        info = casstore.sklearn.log_model(forest, name="clf", signature=sig, metadata={"owner": "ana"}, tags={"t": "1"})
    assert info.run_id == run.info.run_id and info.artifact_path == "clf"
    assert info.model_uri == f"runs:/{run.info.run_id}/clf"
    assert info.signature == sig and info.registered_model_version is None
    entry = _entry(info)
    from casstore.objects.codec import pack

    assert hash_bytes(pack(entry)) == info.model_digest == entry_digest(entry)
    assert entry["kind"] == "model"
    import sklearn

    assert entry["flavors"]["sklearn"]["sklearn_version"] == sklearn.__version__
    assert entry["flavors"]["sklearn"]["serialization_format"] == "cloudpickle"
    pf = entry["flavors"]["python_function"]
    assert pf["loader_module"] == "casstore.sklearn" and pf["python_version"] == ".".join(map(str, sys.version_info[:3]))
    assert f"scikit-learn=={sklearn.__version__}" in entry["requirements"]
    assert f"numpy=={np.__version__}" in entry["requirements"]
    assert any(r.startswith("cloudpickle==") for r in entry["requirements"])
    assert (entry["metadata"], entry["tags"]) == ({"owner": "ana"}, {"t": "1"})
    assert ModelSignature.from_dict(entry["signature"]) == sig
    # every file of the model is a run artifact with the digest the entry lists
    arts = {a.path: a.digest for a in casstore.list_artifacts(run.info.run_id, "clf")}
    assert set(arts) == {f"clf/{p}" for p in entry["files"]}
    assert {"clf/MLmodel", "clf/model.pkl", "clf/requirements.txt", "clf/python_env.yaml"} <= set(arts)
    for p, f in entry["files"].items():
        assert arts[f"clf/{p}"] == f["digest"]
    view = get_store().get_run(run.info.run_id)
    assert view.models["clf"].digest == info.model_digest


def test_downloaded_model_directory_has_mlflow_files(tracking: str, forest: RandomForestClassifier, tmp_path: Path) -> None:
    with casstore.start_run():
        info = casstore.sklearn.log_model(forest, "clf", input_example=X[:2])
    dst = tmp_path / "dl"
    casstore.sklearn.load_model(info.model_uri, dst_path=dst)
    mlm = yaml.safe_load((dst / "MLmodel").read_text())
    assert mlm["flavors"]["python_function"]["loader_module"] == "mlflow.sklearn"
    assert mlm["flavors"]["sklearn"]["pickled_model"] == "model.pkl"
    assert mlm["saved_input_example_info"]["type"] == "ndarray"
    assert "scikit-learn==" in (dst / "requirements.txt").read_text()
    env = yaml.safe_load((dst / "python_env.yaml").read_text())
    assert env["dependencies"] == ["-r requirements.txt"]
    # the signature was inferred from the input example
    assert info.signature is not None and info.signature.inputs.inputs[0].shape == (-1, 4)


@pytest.mark.filterwarnings("ignore")  # MLflow's own warnings (pickle formats, type hints)
def test_mlflow_reads_a_downloaded_model(tracking: str, forest: RandomForestClassifier, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow.sklearn as mlflow_sklearn  # in the test extra
    import mlflow.pyfunc

    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    with casstore.start_run():
        info = casstore.sklearn.log_model(forest, "clf", signature=infer_signature(X, forest.predict(X)))
    dst = tmp_path / "dl"
    casstore.sklearn.load_model(info.model_uri, dst_path=dst)
    assert np.array_equal(mlflow_sklearn.load_model(str(dst)).predict(X), forest.predict(X))
    assert np.array_equal(mlflow.pyfunc.load_model(str(dst)).predict(X), forest.predict(X))


def test_log_model_without_active_run_starts_and_ends_its_own(tracking: str, forest: RandomForestClassifier) -> None:
    info = casstore.sklearn.log_model(forest, "clf")
    assert casstore.active_run() is None
    run = casstore.get_run(info.run_id)
    assert run.info.status == "FINISHED" and run.info.digest
    assert np.array_equal(casstore.pyfunc.load_model(info.model_uri).predict(X), forest.predict(X))


def test_artifact_path_is_a_deprecated_alias_of_name(tracking: str, forest: RandomForestClassifier) -> None:
    with casstore.start_run():
        with pytest.warns(DeprecationWarning, match="artifact_path"):
            info = casstore.sklearn.log_model(forest, artifact_path="old")
        assert info.artifact_path == "old"
        with pytest.raises(InvalidInputError, match="pass only name"):
            with pytest.warns(DeprecationWarning):
                casstore.sklearn.log_model(forest, "a", artifact_path="b")


def test_a_second_model_under_the_same_name_is_refused(tracking: str, forest: RandomForestClassifier) -> None:
    other = LogisticRegression(max_iter=200).fit(X, Y)
    with casstore.start_run():
        casstore.sklearn.log_model(forest, "clf")
        with pytest.raises(ImmutableArtifactError):
            casstore.sklearn.log_model(other, "clf")


def test_pip_requirements_replace_and_extra_requirements_add(tracking: str, forest: RandomForestClassifier) -> None:
    with casstore.start_run():
        a = casstore.sklearn.log_model(forest, "a", pip_requirements=["scikit-learn", "numpy<3"])
        b = casstore.sklearn.log_model(forest, "b", extra_pip_requirements=["xgboost==2.0.0"])
        with pytest.raises(InvalidInputError, match="not both"):
            casstore.sklearn.log_model(forest, "c", pip_requirements=["x"], extra_pip_requirements=["y"])
        with pytest.raises(InvalidInputError, match="serialization_format"):
            casstore.sklearn.log_model(forest, "d", serialization_format="joblib")
    assert a.requirements == ["scikit-learn", "numpy<3"]
    assert b.requirements[-1] == "xgboost==2.0.0" and any(r.startswith("scikit-learn==") for r in b.requirements)


def test_dataframe_model_enforces_its_columns(tracking: str) -> None:
    df = pd.DataFrame(X, columns=["sl", "sw", "pl", "pw"])
    model = LogisticRegression(max_iter=300).fit(df, Y)
    with casstore.start_run():
        info = casstore.sklearn.log_model(model, "clf", input_example=df.head(3))
    loaded = casstore.pyfunc.load_model(info.model_uri)
    assert [c.name for c in loaded.metadata.get_input_schema()] == ["sl", "sw", "pl", "pw"]
    assert np.array_equal(loaded.predict(df), model.predict(df))
    with pytest.raises(InvalidInputError, match=r"missing columns \['pw'\]"):
        loaded.predict(df.drop(columns=["pw"]))
    with pytest.raises(InvalidInputError, match="column 'sl' must be double"):
        loaded.predict(df.assign(sl="x"))
    assert any(r.startswith("pandas==") for r in info.requirements)


def test_pyfunc_enforces_tensor_signature(tracking: str, forest: RandomForestClassifier) -> None:
    with casstore.start_run():
        info = casstore.sklearn.log_model(forest, "clf", signature=infer_signature(X, forest.predict(X)))
    loaded = casstore.pyfunc.load_model(info.model_uri)
    with pytest.raises(InvalidInputError, match="expected 4 columns, got 3"):
        loaded.predict(X[:, :3])
    with pytest.raises(InvalidInputError, match="dtype float64"):
        loaded.predict(X.astype("complex128"))
    assert np.array_equal(loaded.predict(X.astype("int64")), forest.predict(X.astype("int64")))
    assert loaded.model_digest == info.model_digest


def test_skops_asks_for_trusted_types_at_load(tracking: str, forest: RandomForestClassifier, where: str) -> None:
    pytest.importorskip("skops")
    with casstore.start_run():
        info = casstore.sklearn.log_model(
            forest, "clf", serialization_format="skops", skops_trusted_types=["sklearn.tree._tree.Tree"]
        )
    entry = _entry(info)
    untrusted = entry["flavors"]["sklearn"]["skops_untrusted_types"]
    assert "sklearn.tree._tree.Tree" in untrusted
    assert entry["files"].keys() >= {"model.skops"}
    # types named at log time are not trusted silently at load time
    with pytest.raises(InvalidInputError, match=r"not trusted: .*sklearn\.tree\._tree\.Tree.*skops_trusted_types="):
        casstore.sklearn.load_model(info.model_uri)
    with pytest.raises(InvalidInputError, match="not trusted"):
        casstore.pyfunc.load_model(info.model_uri)
    with pytest.raises(InvalidInputError, match="list of type names"):
        casstore.sklearn.load_model(info.model_uri, skops_trusted_types=True)  # type: ignore[arg-type]
    model = casstore.sklearn.load_model(info.model_uri, skops_trusted_types=untrusted)
    assert np.array_equal(model.predict(X), forest.predict(X))
    assert np.array_equal(casstore.pyfunc.load_model(info.model_uri, skops_trusted_types=untrusted).predict(X), forest.predict(X))
    assert any(r.startswith("skops==") for r in info.requirements)


@pytest.fixture(params=["disk", "memory"])
def where(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Load models with their files written to a private directory, or all held in memory."""
    monkeypatch.setattr(fetch, "HOLD_MIN", 0 if request.param == "memory" else 1 << 40)
    return str(request.param)


def test_code_paths_travel_with_the_model(tracking: str, tmp_path: Path, where: str) -> None:
    code = tmp_path / "src" / "casstore_test_custom_model.py"
    code.parent.mkdir()
    code.write_text(textwrap.dedent(
        """
        class Doubler:
            def predict(self, X):
                return [2 * sum(row) for row in X]
        """
    ))
    sys.path.insert(0, str(code.parent))
    try:
        import casstore_test_custom_model as mod

        with casstore.start_run():
            info = casstore.sklearn.log_model(mod.Doubler(), "m", serialization_format="pickle", code_paths=[str(code)])
    finally:
        sys.path.remove(str(code.parent))
        sys.modules.pop("casstore_test_custom_model", None)
    code.unlink()
    assert "code/casstore_test_custom_model.py" in _entry(info)["files"]
    try:
        assert casstore.pyfunc.load_model(info.model_uri).predict([[1, 2]]) == [6]
    finally:
        sys.modules.pop("casstore_test_custom_model", None)


def test_load_model_errors_are_clear(tracking: str, forest: RandomForestClassifier) -> None:
    with casstore.start_run() as run:
        casstore.sklearn.log_model(forest, "clf")
    with pytest.raises(FileNotFoundError, match="no model named 'other'.*clf"):
        casstore.sklearn.load_model(f"runs:/{run.info.run_id}/other")
    with pytest.raises(FileNotFoundError, match="no registered model named 'nope'"):
        casstore.pyfunc.load_model("models:/nope/1")
    with pytest.raises(InvalidInputError, match="unknown scheme"):
        casstore.pyfunc.load_model("s3://bucket/model")
    assert not os.path.exists(os.path.join(tracking, "nope"))


def test_a_bad_registered_model_name_is_refused_before_logging(tracking: str, forest: RandomForestClassifier) -> None:
    with pytest.raises(InvalidInputError, match="registered model name"):
        casstore.sklearn.log_model(forest, "clf", registered_model_name="a/b")
    assert casstore.active_run() is None
    assert get_store().list_run_ids() == []


# ---- text models -----------------------------------------------------------------------

DOCS = np.array(["good movie", "bad movie", "great film", "awful film"] * 5)
DOC_LABELS = np.array([1, 0, 1, 0] * 5)


@pytest.fixture(scope="module")
def text_pipeline() -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline

    return make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(DOCS, DOC_LABELS)


@pytest.mark.parametrize("example, dtype", [
    (DOCS[:2], "str"), (DOCS[:2].astype(object), "object"), (list(DOCS[:2]), "str"),
], ids=["str-ndarray", "object-ndarray", "list-of-str"])
def test_text_pipeline_logs_with_a_text_example_and_predicts_from_it(
    tracking: str, text_pipeline: Any, example: Any, dtype: str
) -> None:
    info = casstore.sklearn.log_model(text_pipeline, name="txt", input_example=example)
    assert info.signature is not None and info.signature.inputs.inputs == [TensorSpec(dtype, (-1,))]
    loaded = casstore.pyfunc.load_model(info.model_uri)
    expected = text_pipeline.predict(np.asarray(example))
    assert np.array_equal(loaded.predict(example), expected)
    assert np.array_equal(loaded.predict(DOCS), text_pipeline.predict(DOCS))


def test_text_pipeline_with_an_object_array_signature_gets_the_array_unchanged(tracking: str, text_pipeline: Any) -> None:
    docs = DOCS.astype(object)
    sig = infer_signature(docs, text_pipeline.predict(docs))
    info = casstore.sklearn.log_model(text_pipeline, name="txt", signature=sig)
    loaded = casstore.pyfunc.load_model(info.model_uri)
    assert np.array_equal(loaded.predict(docs[:4]), text_pipeline.predict(docs[:4]))


def test_an_example_keeps_its_numpy_dtype_in_the_inferred_signature(tracking: str, forest: RandomForestClassifier) -> None:
    info = casstore.sklearn.log_model(forest, "clf", input_example=X[:2].astype("float32"))
    assert info.signature is not None and info.signature.inputs.inputs == [TensorSpec("float32", (-1, 4))]


def test_model_info_carries_the_tags_and_the_creation_time(tracking: str, forest: RandomForestClassifier) -> None:
    before = time.time_ns() // 1_000_000
    info = casstore.sklearn.log_model(forest, "clf", tags={"team": "risk", "n": 3})  # type: ignore[dict-item]
    after = time.time_ns() // 1_000_000
    assert info.tags == {"team": "risk", "n": "3"} == _entry(info)["tags"]
    assert before <= info.creation_timestamp <= after
    assert casstore.sklearn.log_model(forest, "plain").tags == {}
