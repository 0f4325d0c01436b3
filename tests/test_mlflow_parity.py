"""MLflow's tracking API where casstore had gaps: search_runs' frame, error codes, tag and
experiment changes, tables, async-logging calls, the registry URI and the environment."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import casstore
from casstore.exceptions import ImmutableArtifactError, InvalidInputError, MlflowException
from casstore.tracking import fluent, uri

from tracking_helpers import run_python, tracking  # noqa: F401  (fixture)


def test_search_runs_frame_has_mlflows_columns_and_nulls(tracking: str) -> None:
    with casstore.start_run() as a:
        casstore.log_metric("acc", 0.5)
        casstore.log_param("C", "1")
    with casstore.start_run() as b:
        casstore.log_param("solver", "lbfgs")
    frame = casstore.search_runs(order_by=["attributes.start_time ASC"])
    assert frame["run_id"].tolist() == [a.info.run_id, b.info.run_id]
    assert np.isnan(frame["metrics.acc"].iloc[1]) and frame["params.C"].isna().tolist() == [False, True]
    assert frame["params.solver"].iloc[1] == "lbfgs" and str(frame["start_time"].dt.tz) == "UTC"
    runs = casstore.search_runs(output_format="list")
    assert all(isinstance(r, casstore.Run) for r in runs)


def test_search_runs_without_pandas_says_what_to_do(tracking: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with casstore.start_run():
        pass
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(InvalidInputError, match=r"pip install 'casstore\[pandas\]'.*output_format='list'"):
        casstore.search_runs()
    assert len(casstore.search_runs(output_format="list")) == 1


def test_client_search_pages_with_tokens(tracking: str) -> None:
    client = casstore.MlflowClient()
    ids = []
    for _ in range(5):
        with casstore.start_run() as r:
            pass
        ids.append(r.info.run_id)
    seen: list[str] = []
    page = client.search_runs(["0"], max_results=2)
    while True:
        seen += [r.info.run_id for r in page]
        if page.token is None:
            break
        page = client.search_runs(["0"], max_results=2, page_token=page.token)
    assert sorted(seen) == sorted(ids) and len(seen) == 5
    with pytest.raises(InvalidInputError, match="page_token"):
        client.search_runs(["0"], page_token="garbage")


def test_errors_carry_mlflows_error_codes(tracking: str) -> None:
    assert casstore.MlflowException is casstore.exceptions.CasstoreError
    with pytest.raises(casstore.MlflowException) as e:
        casstore.get_run("0" * 32)
    assert e.value.error_code == "RESOURCE_DOES_NOT_EXIST" and e.value.get_http_status_code() == 404
    casstore.create_experiment("taken")
    with pytest.raises(MlflowException) as e:
        casstore.create_experiment("taken")
    assert e.value.error_code == "RESOURCE_ALREADY_EXISTS"
    with casstore.start_run():
        casstore.log_param("p", 1)
        with pytest.raises(MlflowException) as e:
            casstore.log_param("p", 2)
        assert isinstance(e.value, ImmutableArtifactError) and e.value.error_code == "INVALID_PARAMETER_VALUE"
    raised = MlflowException("custom", error_code=1000)  # MLflow's protobuf number
    assert raised.error_code == "INVALID_PARAMETER_VALUE" and raised.message == "custom"


def test_mlflows_refusals(tracking: str) -> None:
    with pytest.raises(MlflowException, match="not both") as e:
        casstore.search_runs(experiment_ids=["0"], experiment_names=["Default"])
    assert e.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException, match="description"):
        casstore.start_run(description="d", tags={"mlflow.note.content": "x"})
    assert casstore.active_run() is None
    with pytest.raises(MlflowException, match="artifact_location"):
        casstore.create_experiment("elsewhere", artifact_location="s3://bucket/x")
    assert casstore.get_experiment_by_name("elsewhere") is None
    with casstore.start_run() as parent:
        with pytest.raises(MlflowException, match="parent_run_id"):
            casstore.start_run(nested=True, parent_run_id="f" * 32)


def test_tags_parent_and_async_logging(tracking: str) -> None:
    with casstore.start_run() as parent:
        with casstore.start_run(nested=True) as child:
            casstore.set_tag("t", "1")
            casstore.delete_tag("t")
            ops = casstore.log_metric("m", 1.0, synchronous=False)
            ops.wait()
            casstore.log_params({"a": 1}, synchronous=False).wait()
            casstore.flush_async_logging()
            with pytest.raises(MlflowException) as e:
                casstore.delete_tag("never-set")
            assert e.value.error_code == "RESOURCE_DOES_NOT_EXIST"
            casstore.set_tag("back", "x")
    got = casstore.get_run(child.info.run_id)
    assert "t" not in got.data.tags and got.data.tags["back"] == "x" and got.data.metrics == {"m": 1.0}
    assert casstore.get_parent_run(child.info.run_id).info.run_id == parent.info.run_id  # type: ignore[union-attr]
    assert casstore.get_parent_run(parent.info.run_id) is None
    assert casstore.RunStatus.to_string(casstore.RunStatus.FINISHED) == "FINISHED"
    assert casstore.RunStatus.from_string("KILLED") == casstore.RunStatus.KILLED


def test_tables_are_logged_listed_and_loaded(tracking: str) -> None:
    import pandas as pd

    with casstore.start_run() as run:
        casstore.log_table({"q": ["a", "b"], "score": [1, 2]}, "eval/table.json")
        casstore.log_table(pd.DataFrame({"q": ["a", "b"], "score": [1, 2]}), "eval/table.json")  # same content
        with pytest.raises(ImmutableArtifactError):
            casstore.log_table({"q": ["c"], "score": [3]}, "eval/table.json")  # MLflow would append
        with pytest.raises(InvalidInputError, match=".json or .parquet"):
            casstore.log_table({"q": [1]}, "table.csv")
    assert casstore.get_run(run.info.run_id).data.tags["mlflow.loggedArtifacts"] == '[{"path": "eval/table.json", "type": "table"}]'
    frame = casstore.load_table("eval/table.json", extra_columns=["run_id"])
    assert frame["score"].tolist() == [1, 2] and set(frame["run_id"]) == {run.info.run_id}


def test_experiment_tags_deletion_restoration_and_renaming(tracking: str) -> None:
    client = casstore.MlflowClient()
    exp = casstore.set_experiment("exp-a")
    casstore.set_experiment_tags({"team": "risk", "stage": "dev"})
    casstore.set_experiment_tag("stage", "prod")
    client.delete_experiment_tag(exp.experiment_id, "team")
    assert casstore.get_experiment(exp.experiment_id).tags == {"stage": "prod"}
    client.rename_experiment(exp.experiment_id, "exp-b")
    assert casstore.get_experiment_by_name("exp-a") is None
    assert casstore.get_experiment_by_name("exp-b").experiment_id == exp.experiment_id  # type: ignore[union-attr]
    with pytest.raises(MlflowException) as e:
        casstore.create_experiment("exp-a")  # a name stays with its experiment
    assert e.value.error_code == "RESOURCE_ALREADY_EXISTS"
    casstore.delete_experiment(exp.experiment_id)
    names = lambda vt: [x.name for x in casstore.search_experiments(view_type=vt)]  # noqa: E731
    assert names(casstore.ViewType.ACTIVE_ONLY) == ["Default"]
    assert names(casstore.ViewType.DELETED_ONLY) == ["exp-b"] and len(names(casstore.ViewType.ALL)) == 2
    assert casstore.get_experiment(exp.experiment_id).lifecycle_stage == "deleted"
    with pytest.raises(MlflowException, match="deleted"):
        casstore.start_run(experiment_id=exp.experiment_id)
    with pytest.raises(MlflowException, match="deleted"):
        casstore.set_experiment("exp-b")
    with pytest.raises(MlflowException, match="Default"):
        casstore.delete_experiment("0")
    client.restore_experiment(exp.experiment_id)
    with casstore.start_run(experiment_id=exp.experiment_id):
        pass


def test_registry_uri_is_the_tracking_store(tracking: str, tmp_path: Path) -> None:
    assert casstore.get_registry_uri() == casstore.get_tracking_uri() and casstore.is_tracking_uri_set()
    casstore.set_registry_uri(tracking)
    with pytest.raises(InvalidInputError, match="keeps registered models in the store"):
        casstore.set_registry_uri(str(tmp_path / "other"))
    with pytest.raises(InvalidInputError, match="MLflow tracking server or database"):
        casstore.set_registry_uri("databricks-uc")
    assert casstore.search_registered_models() == [] and casstore.search_model_versions() == []


@pytest.mark.parametrize("mlflow_uri", ["sqlite:///mlflow.db", "http://127.0.0.1:5000", "databricks", "postgresql://u@h/db"])
def test_mlflow_server_uris_are_refused_with_what_to_use(tracking: str, mlflow_uri: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="casstore does not talk to.*s3://bucket/prefix.*import-mlflow"):
        casstore.set_tracking_uri(mlflow_uri)
    assert not any(p.name.startswith(("sqlite", "http", "databricks")) for p in tmp_path.iterdir())


def test_mlflow_environment_variables_are_honoured(tmp_path: Path) -> None:
    env = {"MLFLOW_TRACKING_URI": f"file:{tmp_path / 'store'}", "MLFLOW_EXPERIMENT_NAME": "from-mlflow-env",
           "CASSTORE_TRACKING_URI": "", "MLFLOW_EXPERIMENT_ID": ""}
    code = ("import casstore as mlflow\n"
            "with mlflow.start_run() as r: pass\n"
            "print(mlflow.get_experiment(r.info.experiment_id).name, mlflow.is_tracking_uri_set())")
    out = run_python(code, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["from-mlflow-env", "True"] and (tmp_path / "store" / "casstore.json").exists()
    out = run_python(code, cwd=tmp_path, env={**env, "MLFLOW_TRACKING_URI": "sqlite:///mlflow.db"})
    assert out.returncode != 0 and "casstore import-mlflow --mlflow-uri sqlite:///mlflow.db" in out.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "sqlite:").exists()


def test_uri_reset_leaves_no_registry_uri(tracking: str) -> None:
    casstore.set_registry_uri(tracking)
    uri._reset_tracking_uri()
    fluent._reset()
    assert uri._registry_uri is None


def test_dataset_inputs_are_recorded_with_content_digests(tracking: str) -> None:
    import pandas as pd
    from blake3 import blake3

    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]})
    ds = casstore.data.from_pandas(frame, source="data/train.csv", targets="y", name="train")
    same = casstore.data.from_pandas(frame.copy(), name="again")
    assert ds.digest == same.digest and len(ds.digest) == 64
    assert ds.digest != casstore.data.from_pandas(frame.assign(x=[1.0, 2.0, 4.0])).digest
    arr = np.arange(6, dtype=np.int64).reshape(3, 2)
    nds = casstore.data.from_numpy(arr, name="arr")
    expected = blake3(b"casstore-ndarray-v1\n<i8\n[3, 2]\n" + arr.tobytes()).hexdigest()
    assert nds.digest == expected  # what the docs say the digest covers
    with pytest.raises(InvalidInputError, match="digest"):
        casstore.data.from_numpy(arr, digest="abc")
    with casstore.start_run() as run:
        casstore.log_input(ds, context="training", tags={"split": "a"})
        casstore.log_input(ds, context="training")  # again: a no-op
        casstore.log_inputs([nds], contexts=["eval"])
        live = casstore.get_run(run.info.run_id).inputs.dataset_inputs
        assert [d.dataset.name for d in live] == ["train", "arr"]
    inputs = casstore.get_run(run.info.run_id).inputs.dataset_inputs  # from the sealed manifest
    assert [(d.dataset.name, d.dataset.digest) for d in inputs] == [("train", ds.digest), ("arr", nds.digest)]
    first = {t.key: t.value for t in inputs[0].tags}
    assert first == {"split": "a", "mlflow.data.context": "training"}
    assert inputs[0].dataset.source_type == "local" and '"num_rows": 3' in inputs[0].dataset.profile
    with pytest.raises(MlflowException):
        casstore.MlflowClient().log_input(run.info.run_id, ds)  # sealed


def test_manifest_of_a_run_without_inputs_is_unchanged(tracking: str) -> None:
    from casstore.runs.state import RunState, manifest_of

    state = RunState("a" * 32, {"run_id": "a" * 32, "experiment_id": "0", "start_time": 1})
    assert "inputs" not in manifest_of(state, "FINISHED", 2)


def test_restore_run_is_refused_with_why(tracking: str) -> None:
    with casstore.start_run() as run:
        pass
    casstore.restore_run(run.info.run_id)  # an active run: nothing to do, as MLflow
    casstore.delete_run(run.info.run_id)
    with pytest.raises(MlflowException, match="cannot be restored.*casstore gc"):
        casstore.restore_run(run.info.run_id)
    assert casstore.get_run(run.info.run_id).info.lifecycle_stage == "deleted"


def test_fluent_experiment_and_version_helpers(tracking: str) -> None:
    from sklearn.linear_model import LinearRegression

    exp = casstore.set_experiment("helpers")
    casstore.set_experiment_tag("k", "v")
    casstore.delete_experiment_tag("k")
    assert casstore.get_experiment(exp.experiment_id).tags == {}
    casstore.delete_experiment(exp.experiment_id)
    casstore.restore_experiment(exp.experiment_id)
    with casstore.start_run():
        casstore.sklearn.log_model(LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0]), name="m",
                                   registered_model_name="helpers-model")
    casstore.set_model_version_tag("helpers-model", "1", "ok", "yes")
    assert casstore.MlflowClient().get_model_version("helpers-model", 1).tags == {"ok": "yes"}
    casstore.flush_artifact_async_logging()


def test_logged_models_as_mlflow_3_names_them(tracking: str) -> None:
    from sklearn.linear_model import LogisticRegression

    X, y = np.arange(20.0).reshape(-1, 2), np.array([0, 1] * 5)
    with casstore.start_run() as run:
        casstore.log_param("C", 0.5)
        casstore.log_metric("acc", 0.9)
        info = casstore.sklearn.log_model(LogisticRegression(C=0.5).fit(X, y), name="clf", tags={"team": "risk"})
    assert info.model_id == info.model_digest
    got = casstore.get_logged_model(info.model_id)
    assert (got.name, got.source_run_id, got.params, got.tags) == ("clf", run.info.run_id, {"C": "0.5"}, {"team": "risk"})
    assert [m.value for m in got.metrics] == [0.9] and got.model_uri == f"models:/{info.model_id}"
    loaded = casstore.sklearn.load_model(f"models:/{info.model_id}")  # MLflow 3's URI of a logged model
    assert (loaded.predict(X) == y).mean() > 0.4
    frame = casstore.search_logged_models(filter_string="metrics.acc > 0.5 AND name = 'clf'")
    assert frame["model_id"].tolist() == [info.model_id]
    assert casstore.search_logged_models(filter_string="params.C = '2'", output_format="list") == []
    with pytest.raises(InvalidInputError, match="digest pins"):
        casstore.set_logged_model_tags(info.model_id, {"x": "y"})


def test_log_model_model_type_and_step_are_checked_and_kept_in_the_entry(tracking: str) -> None:
    """A bad ``model_type`` or ``step`` is refused before anything is logged; both are in the
    model entry (pinned by the model digest), which leaves them out when not given."""
    from sklearn.linear_model import LinearRegression

    from casstore.models.fetch import load_entry

    X, y = np.arange(6.0).reshape(-1, 1), np.arange(6.0)
    fitted = LinearRegression().fit(X, y)
    with casstore.start_run() as run:
        with pytest.raises(InvalidInputError, match=r"log_model: step must be an integer, got str 'x'"):
            casstore.sklearn.log_model(fitted, name="bad", step="x")  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match=r"model_type must be a string .*got int 3"):
            casstore.sklearn.log_model(fitted, name="bad", model_type=3)  # type: ignore[arg-type]
        plain = casstore.sklearn.log_model(fitted, name="plain")
        typed = casstore.sklearn.log_model(fitted, name="typed", model_type="regressor", step=2)
    store = casstore.MlflowClient().store
    assert "bad" not in store.get_run(run.info.run_id).models
    assert not {"model_type", "step"} & set(load_entry(store, plain.model_id).to_dict())
    entry = load_entry(store, typed.model_id)
    assert (entry.model_type, entry.step) == ("regressor", 2) and entry.digest == typed.model_id
    found = casstore.search_logged_models(filter_string="model_type = 'regressor'", output_format="list")
    assert [m.model_id for m in found] == [typed.model_id]
