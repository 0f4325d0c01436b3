"""MLflow's behaviour and casstore's, side by side: each test runs once against MLflow
(sqlite) and once against casstore, with the same body and the same assertions.

The scenarios port the behaviours MLflow's own tests check in ``tests/tracking/test_tracking.py``
(fluent API) and ``tests/tracking/test_client.py`` (client), written anew for both sides; where
casstore refuses by design what MLflow allows, the test says so in one ``if ml.IS_CASSTORE``
branch (see docs/coming-from-mlflow.md, "Compatibility suite").
"""

from __future__ import annotations

import importlib
import json
import os
import time
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from compat_harness import error_code, ml, mlflow_db  # noqa: F401  (fixtures)


def _client(ml: types.ModuleType) -> object:
    return ml.MlflowClient()  # type: ignore[attr-defined]


def _exp_id(ml: types.ModuleType) -> str:
    with ml.start_run() as r:  # type: ignore[attr-defined]
        pass
    return str(r.info.experiment_id)


# ---- experiments (test_tracking.py: test_create_experiment*, test_set_experiment*, test_list_experiments) ----


@pytest.mark.parametrize("name", [None, "", 123, [], {1: 2}])
def test_create_experiment_refuses_bad_names(ml: types.ModuleType, name: object) -> None:
    with pytest.raises(ml.exceptions.MlflowException):  # type: ignore[attr-defined]
        ml.create_experiment(name)  # type: ignore[attr-defined]


def test_create_experiment_with_duplicate_name(ml: types.ModuleType) -> None:
    exp_id = ml.create_experiment("popular_name-" + _exp_id(ml))
    name = ml.get_experiment(exp_id).name
    with pytest.raises(ml.exceptions.MlflowException) as e:
        ml.create_experiment(name)
    assert error_code(e.value) == "RESOURCE_ALREADY_EXISTS"
    ml.MlflowClient().delete_experiment(exp_id)
    with pytest.raises(ml.exceptions.MlflowException):
        ml.create_experiment(name)


def test_set_experiment_creates_and_activates(ml: types.ModuleType) -> None:
    name = "random_exp-" + _exp_id(ml)
    exp_id = ml.create_experiment(name)
    ml.set_experiment(name)
    with ml.start_run() as run:
        assert run.info.experiment_id == exp_id
    another = name + "-another"
    ml.set_experiment(another)
    exp2 = ml.MlflowClient().get_experiment_by_name(another)
    with ml.start_run() as another_run:
        assert another_run.info.experiment_id == exp2.experiment_id


def test_set_experiment_with_deleted_experiment_name(ml: types.ModuleType) -> None:
    name = "dead_exp-" + _exp_id(ml)
    ml.set_experiment(name)
    with ml.start_run() as run:
        exp_id = run.info.experiment_id
    ml.MlflowClient().delete_experiment(exp_id)
    with pytest.raises(ml.exceptions.MlflowException):
        ml.set_experiment(name)


def test_search_experiments_by_view_type(ml: types.ModuleType) -> None:
    base = _exp_id(ml)
    exp_id = ml.create_experiment(f"exp_1-{base}")
    client = ml.MlflowClient()

    def stages(view_type: int) -> set[tuple[str, str]]:
        return {(e.experiment_id, e.lifecycle_stage) for e in client.search_experiments(view_type=view_type)
                if e.experiment_id == exp_id}

    vt = ml.entities.ViewType
    assert stages(vt.ACTIVE_ONLY) == {(exp_id, "active")}
    client.delete_experiment(exp_id)
    assert stages(vt.ACTIVE_ONLY) == set()
    assert stages(vt.ALL) == {(exp_id, "deleted")}
    assert stages(vt.DELETED_ONLY) == {(exp_id, "deleted")}
    client.restore_experiment(exp_id)
    assert stages(vt.ACTIVE_ONLY) == {(exp_id, "active")}


def test_get_experiment_by_name_of_a_missing_name_is_none(ml: types.ModuleType) -> None:
    assert ml.get_experiment_by_name("no-such-experiment-anywhere") is None


def test_experiment_tags_and_renaming(ml: types.ModuleType) -> None:
    exp_id = _exp_id(ml)
    ml.set_experiment_tag("team", "risk")
    ml.set_experiment_tags({"stage": "dev", "n": 3})
    exp = ml.get_experiment(exp_id)
    assert {k: exp.tags[k] for k in ("team", "stage", "n")} == {"team": "risk", "stage": "dev", "n": "3"}
    client = ml.MlflowClient()
    client.delete_experiment_tag(exp_id, "team")
    assert "team" not in ml.get_experiment(exp_id).tags
    new_name = f"renamed-{exp_id}"
    client.rename_experiment(exp_id, new_name)
    assert ml.get_experiment_by_name(new_name).experiment_id == exp_id


# ---- runs (test_tracking.py: test_start_run_context_manager, test_start_and_end_run, ...) ----------------


def test_start_run_context_manager(ml: types.ModuleType) -> None:
    with ml.start_run() as first_run:
        first_uuid = first_run.info.run_id
        persisted = ml.MlflowClient().get_run(first_uuid)
        assert persisted is not None and persisted.info.run_id == first_uuid
    finished = ml.MlflowClient().get_run(first_uuid)
    assert finished.info.status == ml.entities.RunStatus.to_string(ml.entities.RunStatus.FINISHED)
    with pytest.raises(Exception, match="Failing run!"):
        with ml.start_run() as second_run:
            second_run_id = second_run.info.run_id
            raise Exception("Failing run!")
    assert second_run_id != first_uuid
    assert ml.MlflowClient().get_run(second_run_id).info.status == "FAILED"


def test_start_run_while_a_run_is_active_is_refused(ml: types.ModuleType) -> None:
    with ml.start_run():
        with pytest.raises(Exception, match="already active"):
            ml.start_run()


def test_end_run_with_a_status(ml: types.ModuleType) -> None:
    run = ml.start_run()
    ml.end_run(status="KILLED")
    assert ml.get_run(run.info.run_id).info.status == "KILLED"
    assert ml.active_run() is None
    ml.end_run()  # no active run: nothing happens


def test_start_and_end_run_metrics(ml: types.ModuleType) -> None:
    with ml.start_run() as active_run:
        ml.log_metric("name_1", 25)
    finished = ml.MlflowClient().get_run(active_run.info.run_id)
    assert len(finished.data.metrics) == 1
    assert finished.data.metrics["name_1"] == 25


def test_metric_timestamps_lie_within_the_run(ml: types.ModuleType) -> None:
    with ml.start_run() as active_run:
        ml.log_metric("name_1", 25)
        ml.log_metric("name_1", 30)
        run_id = active_run.info.run_id
    client = ml.MlflowClient()
    history = client.get_metric_history(run_id, "name_1")
    finished = client.get_run(run_id)
    assert len(history) == 2
    assert all(finished.info.start_time <= m.timestamp <= finished.info.end_time for m in history)


def test_log_metric_latest_value_and_history(ml: types.ModuleType) -> None:
    with ml.start_run() as active_run:
        run_id = active_run.info.run_id
        ml.log_metric("name_1", 25, timestamp=123000)
        ml.log_metric("name_2", -3, timestamp=123000)
        ml.log_metric("name_1", 30, 5, timestamp=123000)
        ml.log_metric("name_1", 40, -2, timestamp=123000)
        ml.log_metric("nested/nested/name", 40)
    finished = ml.MlflowClient().get_run(run_id)
    assert len(finished.data.metrics) == 3
    expected = {"name_1": 30, "name_2": -3, "nested/nested/name": 40}
    for key, value in finished.data.metrics.items():
        assert expected[key] == value
    history = ml.MlflowClient().get_metric_history(run_id, "name_1")
    assert {(m.value, m.timestamp, m.step) for m in history} == {(25, 123000, 0), (30, 123000, 5), (40, 123000, -2)}


@pytest.mark.parametrize("step", [None, -10, 5])
def test_log_metrics_share_one_step(ml: types.ModuleType, step: int | None) -> None:
    expected = {"name_1": 30, "name_2": -3, "nested/nested/name": 40}
    with ml.start_run() as active_run:
        ml.log_metrics(expected, step=step)
    client = ml.MlflowClient()
    finished = client.get_run(active_run.info.run_id)
    assert finished.data.metrics == expected
    for key in expected:
        [m] = client.get_metric_history(active_run.info.run_id, key)
        assert m.step == (step if step is not None else 0)


def test_log_batch(ml: types.ModuleType) -> None:
    Metric, Param, RunTag = ml.entities.Metric, ml.entities.Param, ml.entities.RunTag
    t = int(time.time() * 1000)
    metrics = [Metric(key="metric-key0", value=1.0, timestamp=t, step=0), Metric(key="metric-key1", value=4.0, timestamp=t, step=1)]
    params = [Param(key="param-key0", value="param-val0"), Param(key="param-key1", value="param-val1")]
    tags = [RunTag(key="tag-key0", value="tag-val0"), RunTag(key="tag-key1", value="tag-val1")]
    with ml.start_run() as active_run:
        run_id = active_run.info.run_id
        ml.MlflowClient().log_batch(run_id=run_id, metrics=metrics, params=params, tags=tags)
    client = ml.MlflowClient()
    finished = client.get_run(run_id)
    assert finished.data.metrics == {"metric-key0": 1.0, "metric-key1": 4.0}
    assert {(m.value, m.timestamp, m.step) for m in client.get_metric_history(run_id, "metric-key1")} == {(4.0, t, 1)}
    assert finished.data.params == {"param-key0": "param-val0", "param-key1": "param-val1"}
    assert {k: finished.data.tags[k] for k in ("tag-key0", "tag-key1")} == {"tag-key0": "tag-val0", "tag-key1": "tag-val1"}


def test_client_run_with_batches_and_the_metric_history_page(ml: types.ModuleType) -> None:
    """A run driven by the client alone: ``create_run``, ``log_batch``, ``set_terminated``; the
    history is one page of ``Metric`` entities that know their run and turn into dicts."""
    Metric, Param, RunTag = ml.entities.Metric, ml.entities.Param, ml.entities.RunTag
    client = ml.MlflowClient()
    run = client.create_run(_exp_id(ml), run_name="batched", tags={"team": "a"})
    rid = run.info.run_id
    t = int(time.time() * 1000)
    client.log_batch(rid, metrics=[Metric("loss", 0.5, t, 0), Metric("loss", 0.3, t + 1, 1)],
                     params=[Param("lr", "0.01")], tags=[RunTag("stage", "dev")])
    client.log_batch(rid, metrics=[Metric(key="loss", value=0.2, timestamp=t + 2, step=2)])
    client.set_terminated(rid)
    got = client.get_run(rid)
    assert (got.info.status, got.info.run_name, got.data.metrics) == ("FINISHED", "batched", {"loss": 0.2})
    history = client.get_metric_history(rid, "loss")
    assert history.token is None and [(m.value, m.step) for m in history] == [(0.5, 0), (0.3, 1), (0.2, 2)]
    d = history[2].to_dictionary()
    assert {k: d[k] for k in ("key", "value", "timestamp", "step")} == {"key": "loss", "value": 0.2, "timestamp": t + 2, "step": 2}
    assert d["run_id"] in (None, rid)  # MLflow's sqlite store leaves it unset; casstore says which run
    frame = pd.DataFrame([m.to_dictionary() for m in history])
    assert frame["value"].tolist() == [0.5, 0.3, 0.2]


def test_set_tags_are_strings(ml: types.ModuleType) -> None:
    with ml.start_run() as active_run:
        ml.set_tags({"name_1": "c", "name_2": "b", "nested/nested/name": 5})
    tags = ml.MlflowClient().get_run(active_run.info.run_id).data.tags
    assert {k: tags[k] for k in ("name_1", "name_2", "nested/nested/name")} == {"name_1": "c", "name_2": "b", "nested/nested/name": "5"}


def test_system_tags_include_mlflows(ml: types.ModuleType) -> None:
    with ml.start_run(run_name="tagged") as run:
        pass
    tags = ml.get_run(run.info.run_id).data.tags
    assert {"mlflow.user", "mlflow.source.name", "mlflow.source.type", "mlflow.runName"} <= set(tags)
    assert tags["mlflow.runName"] == "tagged" and tags["mlflow.source.type"] == "LOCAL"


def test_log_metric_validation(ml: types.ModuleType) -> None:
    with ml.start_run() as active_run:
        with pytest.raises(ml.exceptions.MlflowException) as e:
            ml.log_metric("name_1", "apple")
    assert error_code(e.value) == "INVALID_PARAMETER_VALUE"
    assert len(ml.MlflowClient().get_run(active_run.info.run_id).data.metrics) == 0


def test_log_param_and_params(ml: types.ModuleType) -> None:
    with ml.start_run() as active_run:
        ml.log_param("name_1", "a")
        ml.log_params({"name_2": "b", "nested/nested/name": 5})
    assert ml.MlflowClient().get_run(active_run.info.run_id).data.params == {
        "name_1": "a", "name_2": "b", "nested/nested/name": "5"}


def test_the_order_of_a_runs_params(ml: types.ModuleType) -> None:
    """MLflow on sqlite gives params in the order they were logged (no MLflow store promises an
    order; its ``search_runs`` columns come in none); casstore gives them by name, the same
    while the run is active, once it ended, and in searches (docs/coming-from-mlflow.md)."""
    logged = ["zeta", "alpha", "Mid", "a10", "a2", "yy", "bb"]
    with ml.start_run() as run:
        for name in logged[:5]:
            ml.log_param(name, 1)
        ml.log_params({"yy": 2, "bb": 3})
        during = list(ml.get_run(run.info.run_id).data.params)
    after = list(ml.get_run(run.info.run_id).data.params)
    [found] = ml.search_runs(output_format="list")
    assert sorted(after) == sorted(logged) and set(found.data.params) == set(logged)
    if ml.IS_CASSTORE:
        assert during == after == list(found.data.params) == sorted(logged)
    else:
        assert during == after == logged


def test_changing_a_param_is_refused(ml: types.ModuleType) -> None:
    with ml.start_run():
        ml.log_param("lr", 0.1)
        ml.log_param("lr", 0.1)  # the same value again is fine
        with pytest.raises(ml.exceptions.MlflowException) as e:
            ml.log_param("lr", 0.2)
    assert error_code(e.value) == "INVALID_PARAMETER_VALUE"


def test_get_run_of_a_missing_run(ml: types.ModuleType) -> None:
    with pytest.raises(ml.exceptions.MlflowException) as e:
        ml.get_run("f" * 32)
    assert error_code(e.value) == "RESOURCE_DOES_NOT_EXIST"


def test_nested_runs_parent_and_last_active(ml: types.ModuleType) -> None:
    with ml.start_run() as parent:
        with ml.start_run(nested=True) as child:
            assert ml.active_run().info.run_id == child.info.run_id
        assert ml.active_run().info.run_id == parent.info.run_id
    assert ml.get_run(child.info.run_id).data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert ml.get_parent_run(child.info.run_id).info.run_id == parent.info.run_id
    assert ml.get_parent_run(parent.info.run_id) is None
    assert ml.last_active_run().info.run_id == parent.info.run_id


def test_start_run_with_parent_run_id(ml: types.ModuleType) -> None:
    with ml.start_run() as parent:
        pass
    with ml.start_run(parent_run_id=parent.info.run_id) as child:
        pass
    assert ml.get_run(child.info.run_id).data.tags["mlflow.parentRunId"] == parent.info.run_id


def test_description_is_the_note_tag(ml: types.ModuleType) -> None:
    with ml.start_run(description="a careful run") as run:
        pass
    assert ml.get_run(run.info.run_id).data.tags["mlflow.note.content"] == "a careful run"
    with pytest.raises(ml.exceptions.MlflowException) as e:
        ml.start_run(description="x", tags={"mlflow.note.content": "y"})
    assert error_code(e.value) == "INVALID_PARAMETER_VALUE"


def test_delete_tag(ml: types.ModuleType) -> None:
    with ml.start_run() as run:
        ml.set_tags({"engineering": "ML Platform", "engineering_remote": "ML Platform"})
        ml.delete_tag("engineering_remote")
    tags = ml.get_run(run.info.run_id).data.tags
    assert "engineering" in tags and "engineering_remote" not in tags


def test_delete_run_hides_it_from_searches(ml: types.ModuleType) -> None:
    with ml.start_run() as keep:
        pass
    with ml.start_run() as gone:
        pass
    ml.delete_run(gone.info.run_id)
    vt = ml.entities.ViewType
    active = ml.search_runs(output_format="list")
    assert [r.info.run_id for r in active] == [keep.info.run_id]
    everything = ml.search_runs(run_view_type=vt.ALL, output_format="list")
    assert {r.info.run_id: r.info.lifecycle_stage for r in everything} == {keep.info.run_id: "active", gone.info.run_id: "deleted"}


def test_logging_calls_with_synchronous_false_return_waitables(ml: types.ModuleType) -> None:
    with ml.start_run() as run:
        ops = [ml.log_metric("m", 1.0, synchronous=False), ml.log_param("p", "v", synchronous=False),
               ml.set_tag("t", "v", synchronous=False)]
        for op in ops:
            op.wait()
        ml.flush_async_logging()
    got = ml.get_run(run.info.run_id).data
    assert got.metrics == {"m": 1.0} and got.params == {"p": "v"} and got.tags["t"] == "v"


def test_run_status_strings(ml: types.ModuleType) -> None:
    RunStatus = ml.entities.RunStatus
    assert RunStatus.to_string(RunStatus.FINISHED) == "FINISHED"
    assert RunStatus.to_string(RunStatus.from_string("KILLED")) == "KILLED"
    assert RunStatus.is_terminated(RunStatus.FAILED) and not RunStatus.is_terminated(RunStatus.RUNNING)


def test_resuming_an_ended_run(ml: types.ModuleType) -> None:
    with ml.start_run() as run:
        ml.log_param("a", 1)
    with ml.start_run(run_id=run.info.run_id):
        ml.log_metric("later", 2.0)
    got = ml.get_run(run.info.run_id)
    assert got.info.status == "FINISHED" and got.data.metrics == {"later": 2.0} and got.data.params == {"a": "1"}


# ---- search_runs (test_tracking.py: test_search_runs*, fluent search_runs) ---------------------------------


def _three_runs(ml: types.ModuleType) -> dict[str, str]:
    ids = {}
    for c, acc in (("0.1", 0.8), ("1.0", 0.95), ("10", 0.9)):
        with ml.start_run(run_name=f"C={c}") as run:
            ml.log_param("C", c)
            ml.log_metric("accuracy", acc)
            ml.set_tag("family", "logreg")
        ids[c] = run.info.run_id
    return ids


def test_search_runs_returns_a_dataframe(ml: types.ModuleType) -> None:
    ids = _three_runs(ml)
    df = ml.search_runs(order_by=["metrics.accuracy DESC"])
    assert isinstance(df, pd.DataFrame)
    assert list(df["run_id"]) == [ids["1.0"], ids["10"], ids["0.1"]]
    assert {"run_id", "experiment_id", "status", "artifact_uri", "start_time", "end_time",
            "metrics.accuracy", "params.C", "tags.family", "tags.mlflow.runName"} <= set(df.columns)
    assert df.iloc[0]["params.C"] == "1.0" and df["metrics.accuracy"].max() == 0.95
    assert set(df["status"]) == {"FINISHED"}


def test_search_runs_filter_and_list_output(ml: types.ModuleType) -> None:
    ids = _three_runs(ml)
    got = ml.search_runs(filter_string="metrics.accuracy > 0.85 and params.C != '10'", output_format="list")
    assert [r.info.run_id for r in got] == [ids["1.0"]]
    got = ml.search_runs(filter_string="tags.mlflow.runName LIKE 'C=1%'", output_format="list")
    assert {r.info.run_id for r in got} == {ids["1.0"], ids["10"]}
    assert len(ml.search_runs(max_results=2, output_format="list")) == 2
    empty = ml.search_runs(filter_string="metrics.accuracy > 5")
    assert len(empty) == 0 and "run_id" in empty.columns


def test_search_runs_by_experiment_names(ml: types.ModuleType) -> None:
    ids = _three_runs(ml)
    name = ml.get_experiment(ml.get_run(ids["10"]).info.experiment_id).name
    assert len(ml.search_runs(experiment_names=[name])) == 3
    with pytest.raises(ml.exceptions.MlflowException) as e:
        ml.search_runs(experiment_ids=["0"], experiment_names=[name])
    assert error_code(e.value) == "INVALID_PARAMETER_VALUE"
    assert len(ml.search_runs(experiment_names=["no-such-experiment"])) == 0


def test_client_search_runs_pages(ml: types.ModuleType) -> None:
    ids = _three_runs(ml)
    exp_id = ml.get_run(ids["10"]).info.experiment_id
    client = ml.MlflowClient()
    first = client.search_runs([exp_id], max_results=2)
    assert len(first) == 2 and first.token
    rest = client.search_runs([exp_id], max_results=2, page_token=first.token)
    assert len(rest) == 1 and not rest.token
    assert {r.info.run_id for r in [*first, *rest]} == set(ids.values())


# ---- artifacts (test_tracking.py: test_log_artifact*, test_log_text, test_log_dict, test_log_table) -------


def test_artifacts_logged_listed_and_read_back(ml: types.ModuleType, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("alpha")
    (tmp_path / "data" / "sub").mkdir()
    (tmp_path / "data" / "sub" / "b.txt").write_text("beta")
    with ml.start_run() as run:
        ml.log_artifact(str(tmp_path / "data" / "a.txt"))
        ml.log_artifacts(str(tmp_path / "data"), artifact_path="all")
        ml.log_text("hello", "notes/hello.txt")
        ml.log_dict({"k": [1, 2]}, "config.json")
    rid = run.info.run_id
    top = sorted((f.path, f.is_dir) for f in ml.MlflowClient().list_artifacts(rid))
    assert top == [("a.txt", False), ("all", True), ("config.json", False), ("notes", True)]
    assert sorted(f.path for f in ml.MlflowClient().list_artifacts(rid, "all")) == ["all/a.txt", "all/sub"]
    assert ml.artifacts.load_text(f"runs:/{rid}/notes/hello.txt") == "hello"
    assert ml.artifacts.load_dict(f"runs:/{rid}/config.json") == {"k": [1, 2]}
    local = ml.artifacts.download_artifacts(run_id=rid, artifact_path="all", dst_path=str(tmp_path / "out"))
    assert (Path(local) / "sub" / "b.txt").read_text() == "beta"


def test_logging_other_content_at_a_logged_path(ml: types.ModuleType) -> None:
    with ml.start_run() as run:
        ml.log_text("v1", "report.txt")
        if ml.IS_CASSTORE:  # an artifact path is bound once
            with pytest.raises(ml.exceptions.ImmutableArtifactError):
                ml.log_text("v2", "report.txt")
        else:
            ml.log_text("v2", "report.txt")
    assert ml.artifacts.load_text(f"runs:/{run.info.run_id}/report.txt") == ("v1" if ml.IS_CASSTORE else "v2")


def test_log_table_and_load_table(ml: types.ModuleType) -> None:
    table = {"inputs": ["What is MLflow?", "What is casstore?"], "outputs": ["a platform", "a store"]}
    with ml.start_run() as run:
        ml.log_table(data=table, artifact_file="qa.json")
    tags = ml.get_run(run.info.run_id).data.tags
    assert json.loads(tags["mlflow.loggedArtifacts"]) == [{"path": "qa.json", "type": "table"}]
    loaded = ml.load_table("qa.json", run_ids=[run.info.run_id], extra_columns=["run_id"])
    assert loaded["inputs"].tolist() == table["inputs"] and set(loaded["run_id"]) == {run.info.run_id}


def test_log_input_records_the_dataset(ml: types.ModuleType) -> None:
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]})
    dataset = ml.data.from_pandas(df, source="data/train.csv", targets="y", name="train")
    with ml.start_run() as run:
        ml.log_input(dataset, context="training")
    [di] = ml.get_run(run.info.run_id).inputs.dataset_inputs
    assert di.dataset.name == "train" and di.dataset.digest == dataset.digest
    assert {t.key: t.value for t in di.tags}["mlflow.data.context"] == "training"
    assert json.loads(di.dataset.profile)["num_rows"] == 3


def test_run_to_dictionary_and_entities_as_dicts(ml: types.ModuleType) -> None:
    """What scripts build reports and frames from: ``run.to_dictionary()``, ``dict(run.info)``."""
    dataset = ml.data.from_pandas(pd.DataFrame({"x": [1.0, 2.0]}), name="train")
    with ml.start_run(run_name="as-dict") as run:
        ml.log_param("p", 1)
        ml.log_metric("m", 0.5)
        ml.log_input(dataset, context="training")
    got = ml.get_run(run.info.run_id)
    d = got.to_dictionary()
    assert {"info", "data", "inputs"} <= set(d)
    assert d["info"]["run_id"] == run.info.run_id and d["info"]["run_name"] == "as-dict"
    assert d["data"]["params"] == {"p": "1"} and d["data"]["metrics"] == {"m": 0.5}
    [di] = d["inputs"]["dataset_inputs"]
    assert di["dataset"]["name"] == "train" and di["dataset"]["digest"] == dataset.digest
    assert di["tags"] == {"mlflow.data.context": "training"} and d["inputs"]["model_inputs"] == []
    info = dict(got.info)
    assert info["run_id"] == run.info.run_id and info["status"] == "FINISHED" and info["lifecycle_stage"] == "active"
    assert dict(got.data)["params"] == {"p": "1"}
    frame = pd.DataFrame([dict(r.info) for r in ml.search_runs(output_format="list")])
    assert frame["run_id"].tolist() == [run.info.run_id]


# ---- models and registry (test_client.py: registered models, versions, aliases) ---------------------------


#: given, so MLflow does not infer requirements (a subprocess per model, seconds each)
REQS = ["scikit-learn", "pandas"]


def _python_model(ml: types.ModuleType, n: int) -> object:
    class AddN(ml.pyfunc.PythonModel):  # type: ignore[name-defined,misc]
        def __init__(self, n: int) -> None:
            self.n = n

        def predict(self, context: object, model_input: pd.DataFrame, params: dict[str, int] | None = None) -> pd.DataFrame:
            return model_input.apply(lambda column: column + self.n + (params or {}).get("extra", 0))

    return AddN(n)


def test_custom_python_model_round_trip(ml: types.ModuleType) -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0]})
    with ml.start_run():
        info = ml.pyfunc.log_model(name="add_n", python_model=_python_model(ml, 5), input_example=frame, pip_requirements=REQS)
        bare = ml.pyfunc.log_model(name="add_n_bare", python_model=_python_model(ml, 1), pip_requirements=REQS)
    loaded = ml.pyfunc.load_model(info.model_uri)
    assert loaded.predict(frame)["a"].tolist() == [6.0, 7.0]
    assert info.signature.inputs.input_names() == ["a"]
    # params a signature does not declare (here: none; MLflow infers its signature from the
    # type hints) are dropped, with a warning
    assert ml.pyfunc.load_model(bare.model_uri).predict(frame, params={"extra": 10})["a"].tolist() == [2.0, 3.0]


def test_models_predict_scores_as_the_server_would(ml: types.ModuleType, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """``mlflow.models.predict`` with the current environment: data, a JSON file with params,
    or CSV, and the predictions as ``{"predictions": ...}`` in a file or on stdout."""
    frame = pd.DataFrame({"a": [1.0, 2.0]})
    signature = ml.models.infer_signature(frame, frame, params={"extra": 0})
    with ml.start_run():
        info = ml.pyfunc.log_model(name="add_n", python_model=_python_model(ml, 1), signature=signature,
                                   pip_requirements=REQS)
    out = tmp_path / "out.json"
    ml.models.predict(info.model_uri, input_data=frame, env_manager="local", output_path=str(out))
    assert json.loads(out.read_text()) == {"predictions": [{"a": 2.0}, {"a": 3.0}]}
    request = tmp_path / "in.json"
    request.write_text(json.dumps({"dataframe_split": {"columns": ["a"], "data": [[1.0]]}, "params": {"extra": 10}}))
    ml.models.predict(info.model_uri, input_path=str(request), env_manager="local", output_path=str(out))
    assert json.loads(out.read_text()) == {"predictions": [{"a": 12.0}]}
    capsys.readouterr()
    ml.models.predict(info.model_uri, input_data=frame, content_type="csv", env_manager="local")
    assert json.loads(capsys.readouterr().out.strip()) == {"predictions": [{"a": 2.0}, {"a": 3.0}]}
    with pytest.raises(Exception, match="input_data") as e:
        ml.models.predict(info.model_uri, input_data=frame, input_path=str(request), env_manager="local")
    assert error_code(e.value) == "INVALID_PARAMETER_VALUE"
    if ml.IS_CASSTORE:  # casstore scores in this environment and builds no other (docs/coming-from-mlflow.md)
        with pytest.raises(ml.MlflowException, match="env_manager='local'"):
            ml.models.predict(info.model_uri, input_data=frame, env_manager="uv")


def test_logged_model_params_metrics_and_the_last_logged_model(ml: types.ModuleType) -> None:
    """MLflow 3's model-centric calls: ``log_model(params=...)``, ``log_metric(model_id=...)``,
    ``get_logged_model``, ``last_logged_model``, ``models:/<model_id>``."""
    frame = pd.DataFrame({"a": [1.0, 2.0]})
    with ml.start_run() as run:
        info = ml.pyfunc.log_model(name="add_n", python_model=_python_model(ml, 1), params={"n": 1, "kind": "add"},
                                   pip_requirements=REQS)
        ml.log_metric("rmse", 0.25, model_id=info.model_id)
    model = ml.get_logged_model(info.model_id)
    assert model.name == "add_n" and model.source_run_id == run.info.run_id
    assert model.params == {"n": "1", "kind": "add"}
    assert "rmse" in {m.key for m in model.metrics}
    assert ml.last_logged_model().model_id == info.model_id
    assert ml.pyfunc.load_model(f"models:/{info.model_id}").predict(frame)["a"].tolist() == [2.0, 3.0]
    run_params = ml.get_run(run.info.run_id).data.params
    # casstore: a logged model's params are its run's (docs/coming-from-mlflow.md); MLflow keeps them apart
    assert run_params == ({"n": "1", "kind": "add"} if ml.IS_CASSTORE else {})


def test_a_model_from_code(ml: types.ModuleType, tmp_path: Path) -> None:
    """MLflow 3's models from code: ``python_model`` is a file that ends with ``set_model``."""
    code = tmp_path / "doubler.py"
    code.write_text(f"import {ml.__name__} as mlflow\n\n\n"
                    "class Doubler(mlflow.pyfunc.PythonModel):\n"
                    "    def predict(self, context, model_input, params=None):\n"
                    "        return model_input * 2\n\n\n"
                    "mlflow.models.set_model(Doubler())\n")
    frame = pd.DataFrame({"a": [1.0, 2.0]})
    with ml.start_run():
        info = ml.pyfunc.log_model(name="doubler", python_model=str(code), input_example=frame, pip_requirements=REQS)
    code.write_text("raise SystemExit('the model runs from the copy it was logged with')\n")
    assert ml.pyfunc.load_model(info.model_uri).predict(frame)["a"].tolist() == [2.0, 4.0]
    assert info.signature.inputs.input_names() == ["a"]
    assert "doubler.py" in [f.path.rsplit("/", 1)[-1] for f in ml.MlflowClient().list_artifacts(info.run_id, "doubler")]
    if ml.IS_CASSTORE:  # a file that sets no model is refused when it is logged, not when it is loaded
        (tmp_path / "empty.py").write_text("x = 1\n")
        with pytest.raises(ml.MlflowException, match=r"did not call set_model\(model\)"), ml.start_run():
            ml.pyfunc.log_model(name="empty", python_model=str(tmp_path / "empty.py"), pip_requirements=REQS)


def test_get_model_dependencies_gives_the_requirements_file(ml: types.ModuleType) -> None:
    with ml.start_run():
        info = ml.pyfunc.log_model(name="add_n", python_model=_python_model(ml, 1), pip_requirements=REQS)
    pip = ml.pyfunc.get_model_dependencies(info.model_uri)
    assert os.path.basename(pip) == "requirements.txt"
    assert {"scikit-learn", "pandas"} <= set(Path(pip).read_text().split())
    conda = ml.pyfunc.get_model_dependencies(info.model_uri, format="conda")
    assert os.path.basename(conda) == "conda.yaml" and "dependencies" in Path(conda).read_text()


def test_inference_params_declared_in_the_signature(ml: types.ModuleType) -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0]})
    signature = ml.models.infer_signature(frame, frame, params={"extra": 0.5, "tags": ["x"], "name": "m"})
    assert [(p.name, p.dtype if ml.IS_CASSTORE else p.dtype.name, p.default, p.shape) for p in signature.params] == [
        ("extra", "double", 0.5, None), ("tags", "string", ["x"], (-1,)), ("name", "string", "m", None)]
    assert repr(signature.params) == "['extra': double (default: 0.5), 'tags': string (default: ['x']) (shape: (-1,)), 'name': string (default: m)]"
    with ml.start_run():
        info = ml.pyfunc.log_model(name="add_n", python_model=_python_model(ml, 1), signature=signature, pip_requirements=REQS)
    assert info.signature.params == signature.params
    model = ml.pyfunc.load_model(info.model_uri)
    assert model.metadata.signature.params == signature.params
    assert model.predict(frame)["a"].tolist() == [2.5, 3.5]  # the default
    assert model.predict(frame, params={"extra": 2})["a"].tolist() == [4.0, 5.0]  # an int taken as a double
    assert model.predict(frame, params={"extra": 1.0, "other": 5})["a"].tolist() == [3.0, 4.0]  # "other": dropped
    with pytest.raises(ml.exceptions.MlflowException):
        model.predict(frame, params={"extra": "a lot"})


def test_sklearn_model_logged_registered_and_loaded_by_alias(ml: types.ModuleType) -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    clf = LogisticRegression(max_iter=300).fit(X, y)
    name = f"iris-{_exp_id(ml)}"
    with ml.start_run():
        info = ml.sklearn.log_model(clf, name="model", registered_model_name=name, input_example=X[:3], pip_requirements=REQS)
    assert info.registered_model_version == 1
    client = ml.MlflowClient()
    client.set_registered_model_alias(name, "champion", 1)
    client.set_model_version_tag(name, "1", "validated", "yes")
    mv = client.get_model_version_by_alias(name, "champion")
    assert mv.version in (1, "1") and mv.tags["validated"] == "yes"
    assert [m.name for m in client.search_registered_models(filter_string=f"name = '{name}'")] == [name]
    assert len(client.search_model_versions(f"name = '{name}'")) == 1
    client.delete_model_version_tag(name, "1", "validated")
    assert "validated" not in client.get_model_version(name, "1").tags
    model = ml.sklearn.load_model(f"models:/{name}@champion")
    assert (model.predict(X) == clf.predict(X)).all()
    pyfunc = ml.pyfunc.load_model(f"models:/{name}/1")
    assert (pyfunc.predict(X) == clf.predict(X)).all()


def test_copy_model_version_and_register_a_registered_version(ml: types.ModuleType) -> None:
    tag = _exp_id(ml)
    src, dst, other = f"src-{tag}", f"dst-{tag}", f"other-{tag}"
    with ml.start_run():
        ml.pyfunc.log_model(name="add_n", python_model=_python_model(ml, 1), pip_requirements=REQS, registered_model_name=src)
    client = ml.MlflowClient()
    client.set_registered_model_alias(src, "champion", "1")
    client.set_model_version_tag(src, "1", "validated", "yes")
    client.update_model_version(src, "1", description="checked")
    mv = client.copy_model_version(src_model_uri=f"models:/{src}/1", dst_name=dst)
    assert (mv.name, int(mv.version), mv.source) == (dst, 1, f"models:/{src}/1")
    assert mv.tags == {"validated": "yes"} and mv.description == "checked"
    assert int(client.copy_model_version(f"models:/{src}@champion", dst).version) == 2
    frame = pd.DataFrame({"a": [1.0]})
    assert ml.pyfunc.load_model(f"models:/{dst}/2").predict(frame)["a"].tolist() == [2.0]
    assert int(ml.register_model(f"models:/{src}/1", other).version) == 1
    assert ml.pyfunc.load_model(f"models:/{other}/1").predict(frame)["a"].tolist() == [2.0]
    with pytest.raises(ml.exceptions.MlflowException, match="models:/"):
        client.copy_model_version(f"runs:/{'0' * 32}/add_n", dst)


def test_registry_tags_set_and_deleted(ml: types.ModuleType) -> None:
    """Deleting a registered model's or a version's tag that is not there does nothing (cleanup
    code runs such deletes again)."""
    name = f"tagged-{_exp_id(ml)}"
    with ml.start_run():
        ml.pyfunc.log_model(name="add_n", python_model=_python_model(ml, 1), pip_requirements=REQS, registered_model_name=name)
    client = ml.MlflowClient()
    client.set_registered_model_tag(name, "task", "clf")
    client.set_registered_model_tag(name, "owner", "ana")
    client.delete_registered_model_tag(name, "owner")
    client.delete_registered_model_tag(name, "owner")
    assert client.get_registered_model(name).tags == {"task": "clf"}
    client.set_model_version_tag(name, "1", "tmp", "x")
    client.delete_model_version_tag(name, "1", "tmp")
    client.delete_model_version_tag(name, "1", "never-set")
    assert client.get_model_version(name, "1").tags == {}
    assert [m.name for m in client.search_registered_models(filter_string="tags.task = 'clf'") if m.name == name] == [name]
    with pytest.raises(ml.exceptions.MlflowException) as e:
        client.set_registered_model_tag(f"no-such-model-{name}", "a", "b")
    assert error_code(e.value) == "RESOURCE_DOES_NOT_EXIST"


def test_python_model_with_load_context_artifacts_and_a_params_schema(ml: types.ModuleType, tmp_path: Path) -> None:
    class Scaler(ml.pyfunc.PythonModel):  # type: ignore[name-defined,misc]
        def load_context(self, context: object) -> None:
            self.factor = json.loads(Path(context.artifacts["cfg"]).read_text())["factor"]  # type: ignore[attr-defined]

        def predict(self, context: object, model_input: pd.DataFrame, params: dict[str, int] | None = None) -> pd.Series:
            return model_input["x"] * self.factor * (params or {}).get("mult", 1)

    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"factor": 3}))
    frame = pd.DataFrame({"x": [1.0, 2.0]})
    signature = ml.models.infer_signature(frame, pd.Series([3.0, 6.0]), params={"mult": 1})
    with ml.start_run():
        info = ml.pyfunc.log_model(name="scaler", python_model=Scaler(), artifacts={"cfg": str(cfg)},
                                   signature=signature, pip_requirements=REQS)
    model = ml.pyfunc.load_model(info.model_uri)
    assert list(model.predict(frame, params={"mult": 2})) == [6.0, 12.0]
    assert model.unwrap_python_model().factor == 3
    assert model.metadata.get_params_schema() == signature.params
    assert [p["name"] for p in model.metadata.get_params_schema().to_dict()] == ["mult"]


def test_save_model_and_load_the_directory(ml: types.ModuleType, tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression

    X = np.arange(10.0).reshape(-1, 1)
    lr = LinearRegression().fit(X, 2 * X.ravel())
    ml.sklearn.save_model(lr, str(tmp_path / "saved"), pip_requirements=REQS)
    assert ml.sklearn.load_model(str(tmp_path / "saved")).predict([[3.0]]).tolist() == pytest.approx([6.0])
    with pytest.raises(ml.exceptions.MlflowException):
        ml.sklearn.save_model(lr, str(tmp_path / "saved"), pip_requirements=REQS)  # the directory exists


def test_a_saved_model_logged_as_artifacts_loads_from_the_run(ml: types.ModuleType, tmp_path: Path) -> None:
    """An MLflow habit: ``save_model`` to a directory, ``log_artifacts`` it, load ``runs:/<id>/<dir>``."""
    from sklearn.linear_model import LinearRegression

    X = np.arange(10.0).reshape(-1, 1)
    ml.sklearn.save_model(LinearRegression().fit(X, 2 * X.ravel()), str(tmp_path / "saved"), pip_requirements=REQS,
                          serialization_format="cloudpickle")
    with ml.start_run() as run:
        ml.log_artifacts(str(tmp_path / "saved"), artifact_path="exported")
    uri = f"runs:/{run.info.run_id}/exported"
    assert ml.pyfunc.load_model(uri).predict(np.array([[3.0]])).tolist() == pytest.approx([6.0])
    assert ml.sklearn.load_model(uri).predict([[4.0]]).tolist() == pytest.approx([8.0])
    with pytest.raises(ml.exceptions.MlflowException):
        ml.pyfunc.load_model(f"runs:/{run.info.run_id}/nothing-here")


# ---- autologging (tests/sklearn/test_sklearn_autolog.py: params, training metrics, searches) -------------


@pytest.fixture
def autologging(ml: types.ModuleType) -> object:
    # models are left out here (MLflow infers each one's requirements in a subprocess, seconds
    # each); tests/test_sklearn_autolog.py checks the models casstore logs
    ml.sklearn.autolog(log_models=False)
    yield ml
    ml.sklearn.autolog(disable=True)


def test_autolog_records_params_metrics_and_tags(autologging: types.ModuleType) -> None:
    ml = autologging
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    with ml.start_run() as run:
        LogisticRegression(C=0.5, max_iter=300).fit(X, y)
    got = ml.get_run(run.info.run_id)
    assert got.data.params["C"] == "0.5" and got.data.params["max_iter"] == "300"
    assert {"training_accuracy_score", "training_precision_score", "training_recall_score", "training_f1_score",
            "training_log_loss", "training_roc_auc", "training_score"} <= set(got.data.metrics)
    assert got.data.tags["estimator_name"] == "LogisticRegression"
    assert got.data.tags["estimator_class"] == "sklearn.linear_model._logistic.LogisticRegression"
    assert got.data.metrics["training_score"] == pytest.approx(got.data.metrics["training_accuracy_score"])
    assert "mlflow.autologging" not in got.data.tags, "only a run autologging starts carries the tag"


def test_autolog_regressor_metrics_and_a_run_of_its_own(autologging: types.ModuleType) -> None:
    ml = autologging
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import ElasticNet

    X, y = load_diabetes(return_X_y=True)
    ElasticNet(alpha=0.1).fit(X, y)  # no active run: autologging starts one, and ends it
    assert ml.active_run() is None
    [run] = ml.search_runs(output_format="list")
    assert run.info.status == "FINISHED" and run.data.params["alpha"] == "0.1"
    assert run.data.tags["mlflow.autologging"] == "sklearn"  # what users filter autologged runs by
    assert {"training_mean_squared_error", "training_root_mean_squared_error", "training_mean_absolute_error",
            "training_r2_score", "training_score"} <= set(run.data.metrics)


def test_autolog_grid_search_makes_child_runs(autologging: types.ModuleType) -> None:
    ml = autologging
    from sklearn.datasets import load_iris
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    X, y = load_iris(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), SVC())
    search = GridSearchCV(pipe, {"svc__C": [0.1, 1.0, 10.0]}, cv=3)
    with ml.start_run() as parent:
        search.fit(X, y)
    got = ml.get_run(parent.info.run_id)
    assert got.data.params["best_svc__C"] == str(search.best_params_["svc__C"])
    assert got.data.metrics["best_cv_score"] == pytest.approx(search.best_score_)
    children = ml.search_runs(filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'", output_format="list")
    assert len(children) == 3
    assert {c.data.params["svc__C"] for c in children} == {"0.1", "1.0", "10.0"}
    assert all("mean_test_score" in c.data.metrics for c in children)
    assert "mlflow.autologging" not in got.data.tags
    assert {c.data.tags["mlflow.autologging"] for c in children} == {"sklearn"}
    assert "cv_results.csv" in [f.path for f in ml.MlflowClient().list_artifacts(parent.info.run_id)]


def test_autolog_disable_stops_logging(ml: types.ModuleType) -> None:
    from sklearn.linear_model import LinearRegression

    ml.sklearn.autolog()
    ml.sklearn.autolog(disable=True)
    with ml.start_run() as run:
        LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0])
    assert ml.get_run(run.info.run_id).data.params == {}


# ---- what MLflow's examples and tutorials call (examples/, docs tutorials) --------------------------------


def _eval_frame(kind: str) -> tuple[object, pd.DataFrame, str]:
    """A fitted scikit-learn model and a held-out frame holding its label column."""
    from sklearn import datasets
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.model_selection import train_test_split

    load = {"binary": datasets.load_breast_cancer, "multiclass": datasets.load_iris, "regressor": datasets.load_diabetes}[kind]
    X, y = load(return_X_y=True, as_frame=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    model = LinearRegression() if kind == "regressor" else LogisticRegression(max_iter=5000)
    return model.fit(X_train, y_train), X_test.assign(label=y_test), "label"


def _rounded(metrics: dict[str, object]) -> dict[str, float]:
    return {k: round(float(v), 9) for k, v in metrics.items()}  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regressor"])
def test_evaluate_logs_the_default_evaluators_metrics(ml: types.ModuleType, kind: str) -> None:
    model, frame, label = _eval_frame(kind)
    model_type = "regressor" if kind == "regressor" else "classifier"
    with ml.start_run() as run:
        info = ml.sklearn.log_model(model, name="model", serialization_format="cloudpickle", pip_requirements=REQS)
        result = ml.evaluate(info.model_uri, frame, targets=label, model_type=model_type, evaluators=["default"])
    expected = {
        "binary": {"true_negatives", "false_positives", "false_negatives", "true_positives", "example_count",
                   "accuracy_score", "recall_score", "precision_score", "f1_score", "log_loss", "roc_auc",
                   "precision_recall_auc", "score"},
        "multiclass": {"example_count", "accuracy_score", "recall_score", "precision_score", "f1_score", "log_loss",
                       "roc_auc", "score"},
        "regressor": {"example_count", "mean_absolute_error", "mean_squared_error", "root_mean_squared_error",
                      "sum_on_target", "mean_on_target", "r2_score", "max_error", "mean_absolute_percentage_error",
                      "score"},
    }[kind]
    assert set(result.metrics) == expected and result.run_id == run.info.run_id
    logged = ml.get_run(run.info.run_id).data.metrics
    assert _rounded(logged) == _rounded(result.metrics)
    assert {m.step for m in ml.MlflowClient().get_metric_history(run.info.run_id, "example_count")} == {0}
    assert result.metrics["example_count"] == len(frame)
    from sklearn import metrics as skm

    X, y = frame.drop(columns=[label]), frame[label]
    if kind == "regressor":
        assert result.metrics["r2_score"] == pytest.approx(skm.r2_score(y, model.predict(X)))  # type: ignore[attr-defined]
    else:
        assert result.metrics["accuracy_score"] == pytest.approx(skm.accuracy_score(y, model.predict(X)))  # type: ignore[attr-defined]
    [di] = ml.get_run(run.info.run_id).inputs.dataset_inputs  # the evaluation data, recorded
    assert json.loads(di.dataset.profile)["num_rows"] == len(frame)
    if kind == "binary":  # MLflow also draws its plots; casstore logs the metrics alone
        assert (result.artifacts == {}) if ml.IS_CASSTORE else "roc_curve_plot" in result.artifacts


def test_evaluate_static_predictions_prefix_and_a_run_of_its_own(ml: types.ModuleType) -> None:
    model, frame, label = _eval_frame("multiclass")
    frame = frame.assign(preds=model.predict(frame.drop(columns=[label])))  # type: ignore[attr-defined]
    result = ml.evaluate(data=frame, predictions="preds", targets=label, model_type="classifier",
                         evaluator_config={"metric_prefix": "val_", "average": "macro"})
    assert set(result.metrics) == {"val_example_count", "val_accuracy_score", "val_recall_score",
                                   "val_precision_score", "val_f1_score"}
    from sklearn import metrics as skm

    assert result.metrics["val_f1_score"] == pytest.approx(skm.f1_score(frame[label], frame["preds"], average="macro"))
    run = ml.get_run(result.run_id)  # no run was active: evaluate made one, and ended it
    assert ml.active_run() is None and run.info.status == "FINISHED"
    assert _rounded(run.data.metrics) == _rounded(result.metrics)
    assert [(t.key, t.value) for t in run.inputs.dataset_inputs[0].tags] == [("mlflow.data.context", "val_")]


def test_evaluate_a_function_on_a_named_dataset(ml: types.ModuleType) -> None:
    model, frame, label = _eval_frame("binary")
    dataset = ml.data.from_pandas(frame, targets=label, name="cancer-eval")
    with ml.start_run() as run:
        result = ml.evaluate(model.predict, dataset, model_type="classifier")  # type: ignore[attr-defined]
    # a bare function: no estimator to score, no probabilities
    assert set(result.metrics) == {"true_negatives", "false_positives", "false_negatives", "true_positives",
                                   "example_count", "accuracy_score", "recall_score", "precision_score", "f1_score"}
    assert [d.dataset.name for d in ml.get_run(run.info.run_id).inputs.dataset_inputs] == ["cancer-eval"]


def test_evaluate_a_loaded_model_with_a_positive_label(ml: types.ModuleType) -> None:
    model, frame, label = _eval_frame("binary")
    with ml.start_run():
        info = ml.sklearn.log_model(model, name="model", serialization_format="cloudpickle", pip_requirements=REQS)
        loaded = ml.pyfunc.load_model(info.model_uri)
        result = ml.models.evaluate(loaded, frame, targets=label, model_type="classifier",
                                    evaluator_config={"pos_label": 0})
    from sklearn import metrics as skm

    X, y = frame.drop(columns=[label]), frame[label]
    assert result.metrics["recall_score"] == pytest.approx(skm.recall_score(y, model.predict(X), pos_label=0))  # type: ignore[attr-defined]
    assert result.metrics["true_positives"] == ((y == 0) & (model.predict(X) == 0)).sum()  # type: ignore[attr-defined]


def test_get_model_info_and_a_signature_built_from_types(ml: types.ModuleType) -> None:
    from sklearn.linear_model import LinearRegression

    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [0.0, 1.0, 0.0]})
    lr = LinearRegression().fit(frame, [1.0, 2.0, 3.0])
    schema = importlib.import_module(f"{ml.__name__}.types.schema")
    signature = ml.models.ModelSignature(inputs=schema.Schema([schema.ColSpec("double", "a"), schema.ColSpec("double", "b")]),
                                         outputs=schema.Schema([schema.ColSpec("double")]))
    assert ml.types.Schema is schema.Schema
    with ml.start_run() as run:
        info = ml.sklearn.log_model(lr, name="model", signature=signature, serialization_format="cloudpickle",
                                    pip_requirements=REQS)
    got = ml.models.get_model_info(f"runs:/{run.info.run_id}/model")
    assert got.signature == signature and got.run_id == run.info.run_id and got.model_uuid == info.model_uuid
    assert "python_function" in got.flavors and got.utc_time_created == info.utc_time_created
    assert ml.pyfunc.load_model(info.model_uri).metadata.get_input_schema().input_names() == ["a", "b"]
    with pytest.raises(ml.exceptions.MlflowException):
        ml.models.get_model_info(f"runs:/{run.info.run_id}/no-such-model")


def test_model_load_reads_the_mlmodel_file(ml: types.ModuleType, tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression

    frame = pd.DataFrame({"a": [1.0, 2.0]})
    lr = LinearRegression().fit(frame, [1.0, 2.0])
    signature = ml.models.infer_signature(frame, lr.predict(frame), params={"k": 1})
    with ml.start_run() as run:
        info = ml.sklearn.log_model(lr, name="model", signature=signature, serialization_format="cloudpickle",
                                    pip_requirements=REQS)
    ml.sklearn.save_model(lr, str(tmp_path / "saved"), signature=signature, serialization_format="cloudpickle",
                          pip_requirements=REQS)
    for source in (info.model_uri, str(tmp_path / "saved")):
        model = ml.models.Model.load(source)
        assert model.signature == signature and model.get_params_schema() == signature.params
        assert model.get_input_schema().input_names() == ["a"]
        assert model.flavors["python_function"]["loader_module"] == "mlflow.sklearn"
        assert model.flavors["sklearn"]["serialization_format"] == "cloudpickle"
    assert ml.models.Model.load(info.model_uri).run_id == run.info.run_id
    with pytest.raises(ml.exceptions.MlflowException):
        ml.models.Model.load(str(tmp_path / "no-such-dir"))


def test_dataset_schema_source_and_get_source(ml: types.ModuleType) -> None:
    df = pd.DataFrame({"x": [1.0, 2.0], "label": [0, 1]})
    url = "https://example.com/data/train.csv"
    dataset = ml.data.from_pandas(df, source=url, targets="label", name="train")
    assert dataset.schema.input_names() == ["x", "label"] and dataset.source.to_dict() == {"url": url}
    assert list(dataset.to_dict()) == ["name", "digest", "source", "source_type", "schema", "profile"]
    with ml.start_run() as run:
        ml.log_input(dataset, context="training", tags={"split": "a"})
    [di] = ml.get_run(run.info.run_id).inputs.dataset_inputs
    assert di.dataset.source_type == "http"
    assert [(t.key, t.value) for t in di.tags] == [("mlflow.data.context", "training"), ("split", "a")]
    assert ml.data.get_source(di).url == url and ml.data.get_source(di.dataset).url == url
    assert ml.data.get_source(dataset).url == url


def test_log_model_with_a_model_type_and_a_step(ml: types.ModuleType) -> None:
    """MLflow 3's ``log_model(model_type=..., step=...)``, in both flavors: the logged model
    has that ``model_type``, and its metrics are the run's at that step."""
    from sklearn.linear_model import LinearRegression

    X, y = np.array([[0.0], [1.0], [2.0]]), np.array([0.0, 2.0, 4.0])
    with ml.start_run():
        ml.log_metric("loss", 0.9, step=0)
        ml.log_metrics({"loss": 0.5, "acc": 0.7}, step=1)
        custom = ml.pyfunc.log_model(name="add_n", python_model=_python_model(ml, 1), pip_requirements=REQS,
                                     model_type="regressor", step=1)
        linear = ml.sklearn.log_model(LinearRegression().fit(X, y), name="linear", pip_requirements=REQS,
                                      model_type="linear", serialization_format="cloudpickle")
    custom_model, linear_model = ml.get_logged_model(custom.model_id), ml.get_logged_model(linear.model_id)
    assert (custom_model.model_type, linear_model.model_type) == ("regressor", "linear")
    assert sorted((m.key, m.step, m.value) for m in custom_model.metrics) == [("acc", 1, 0.7), ("loss", 1, 0.5)]
    assert [(m.key, m.step, m.value) for m in linear_model.metrics] == [("loss", 0, 0.9)]
    assert ml.sklearn.load_model(f"models:/{linear.model_id}").predict(X).round(6).tolist() == [0.0, 2.0, 4.0]


def test_names_at_mlflows_import_paths(ml: types.ModuleType) -> None:
    """Where scripts import the client, the registry's entities, ``ModelInfo`` and the system
    tag names from; a sweep filters its child runs by the parent tag."""
    def name(module: str, attr: str) -> object:
        return getattr(importlib.import_module(f"{ml.__name__}.{module}"), attr)

    assert name("client", "MlflowClient") is ml.MlflowClient
    registered = f"paths-{_exp_id(ml)}"
    with ml.start_run() as parent:
        with ml.start_run(nested=True, run_name="child"):
            info = ml.pyfunc.log_model(name="add_n", python_model=_python_model(ml, 1), pip_requirements=REQS,
                                       registered_model_name=registered)
    assert isinstance(info, name("models.model", "ModelInfo"))  # type: ignore[arg-type]
    assert isinstance(ml.MlflowClient().get_model_version(registered, "1"), name("entities.model_registry", "ModelVersion"))  # type: ignore[arg-type]
    assert isinstance(ml.MlflowClient().get_registered_model(registered), name("entities.model_registry", "RegisteredModel"))  # type: ignore[arg-type]
    tags = importlib.import_module(f"{ml.__name__}.utils.mlflow_tags")
    children = ml.search_runs(filter_string=f"tags.{tags.MLFLOW_PARENT_RUN_ID} = '{parent.info.run_id}'")
    assert children[f"tags.{tags.MLFLOW_RUN_NAME}"].tolist() == ["child"]


def test_dataset_classes_at_mlflows_import_paths(ml: types.ModuleType) -> None:
    """Scripts import the dataset classes for type hints and checks from MLflow's modules."""
    def module(name: str) -> types.ModuleType:
        return importlib.import_module(f"{ml.__name__}.data.{name}")

    df = pd.DataFrame({"x": [1.0, 2.0], "y": [0, 1]})
    assert isinstance(module("pandas_dataset").from_pandas(df, targets="y"), module("pandas_dataset").PandasDataset)
    dataset = module("numpy_dataset").from_numpy(np.zeros((2, 2)), targets=np.array([0, 1]))
    assert isinstance(dataset, module("numpy_dataset").NumpyDataset) and isinstance(dataset, module("dataset").Dataset)
    assert isinstance(dataset.source, module("dataset_source").DatasetSource)


def test_search_model_versions_lists_the_most_recently_updated_first(ml: types.ModuleType) -> None:
    name = f"ordered-{ml.__name__}-{time.time_ns()}"
    with ml.start_run():
        info = ml.pyfunc.log_model(name="add_n", python_model=_python_model(ml, 1), pip_requirements=REQS)
    client = _client(ml)
    for _ in range(2):
        ml.register_model(info.model_uri, name)
    time.sleep(0.01)
    client.update_model_version(name, "1", description="checked by hand")
    assert [int(v.version) for v in client.search_model_versions(f"name = '{name}'")] == [1, 2]  # v1 updated last
    ordered = client.search_model_versions(f"name = '{name}'", order_by=["version_number DESC"])
    assert [int(v.version) for v in ordered] == [2, 1]


def test_renaming_a_registered_model(ml: types.ModuleType) -> None:
    client = ml.MlflowClient()
    name = f"to-rename-{_exp_id(ml)}"
    client.create_registered_model(name)
    if ml.IS_CASSTORE:  # a registered model's name keys its history: refused, saying what to do
        with pytest.raises(ml.exceptions.MlflowException, match="create_model_version"):
            client.rename_registered_model(name, name + "-new")
        assert client.get_registered_model(name).name == name
    else:
        client.rename_registered_model(name, name + "-new")
        assert client.get_registered_model(name + "-new").name == name + "-new"
    with pytest.raises(ml.exceptions.MlflowException) as e:
        client.rename_registered_model(name + "-missing", name + "-other")
    assert error_code(e.value) == "RESOURCE_DOES_NOT_EXIST"


def test_model_stages(ml: types.ModuleType) -> None:
    client = ml.MlflowClient()
    name = f"staged-{_exp_id(ml)}"
    client.create_registered_model(name)
    from sklearn.linear_model import LinearRegression

    with ml.start_run() as run:
        ml.sklearn.log_model(LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0]), name="model",
                             serialization_format="cloudpickle", pip_requirements=REQS)
    client.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id)
    assert [v.version for v in client.get_latest_versions(name, stages=["None"])] in ([1], ["1"])
    if ml.IS_CASSTORE:  # no stages: refused, naming aliases, never answered with another version
        with pytest.raises(ml.exceptions.MlflowException, match="set_registered_model_alias"):
            client.transition_model_version_stage(name, 1, "Production")
        with pytest.raises(ml.exceptions.MlflowException, match="get_model_version_by_alias"):
            client.get_latest_versions(name, stages=["Production"])
    else:
        assert client.get_latest_versions(name, stages=["Production"]) == []
        client.transition_model_version_stage(name, 1, "Production")
        assert [v.current_stage for v in client.get_latest_versions(name, stages=["Production"])] == ["Production"]


def test_client_writes_to_an_ended_run(ml: types.ModuleType) -> None:
    with ml.start_run() as run:
        ml.log_metric("m", 1.0)
    client = ml.MlflowClient()
    if ml.IS_CASSTORE:  # the run is sealed: refused, saying how to resume it
        with pytest.raises(ml.exceptions.MlflowException, match=r"start_run\(run_id=\.\.\.\)"):
            client.log_metric(run.info.run_id, "late", 2.0)
        with ml.start_run(run_id=run.info.run_id):
            client.log_metric(run.info.run_id, "late", 2.0)
    else:
        client.log_metric(run.info.run_id, "late", 2.0)
    assert ml.get_run(run.info.run_id).data.metrics == {"m": 1.0, "late": 2.0}


@pytest.mark.parametrize(("load", "expected"), [
    ("load_breast_cancer", ["estimator.html", "training_confusion_matrix.png", "training_precision_recall_curve.png",
                            "training_roc_curve.png"]),
    ("load_iris", ["estimator.html", "training_confusion_matrix.png"]),
])
def test_autolog_training_artifacts(autologging: types.ModuleType, load: str, expected: list[str]) -> None:
    ml = autologging
    from sklearn import datasets
    from sklearn.linear_model import LogisticRegression, Ridge

    X, y = getattr(datasets, load)(return_X_y=True)
    LogisticRegression(max_iter=5000).fit(X, y)
    rid = ml.last_active_run().info.run_id
    assert sorted(f.path for f in ml.MlflowClient().list_artifacts(rid)) == expected
    png = ml.artifacts.download_artifacts(run_id=rid, artifact_path="training_confusion_matrix.png")
    assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = ml.artifacts.load_text(f"runs:/{rid}/estimator.html")
    assert html.lstrip().startswith("<!DOCTYPE html>") and "LogisticRegression" in html
    Ridge().fit(X, y)  # a regressor: the diagram alone
    assert [f.path for f in ml.MlflowClient().list_artifacts(ml.last_active_run().info.run_id)] == ["estimator.html"]


def test_names_scripts_import_for_server_errors_pages_and_serving_checks(ml: types.ModuleType) -> None:
    """``mlflow.exceptions.RestException`` (scripts catch it), ``PagedList`` at its module, and
    ``mlflow.models.validate_serving_input``: a request body checked and scored as the
    scoring server would."""
    paged_list = importlib.import_module(f"{ml.__name__}.store.entities.paged_list")
    assert isinstance(ml.MlflowClient().search_experiments(max_results=1), paged_list.PagedList)
    e = ml.exceptions.RestException({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no run 'x'"})
    assert isinstance(e, ml.exceptions.MlflowException) and error_code(e) == "RESOURCE_DOES_NOT_EXIST"
    assert str(e) == "RESOURCE_DOES_NOT_EXIST: no run 'x'" and e.json["message"] == "no run 'x'"
    frame = pd.DataFrame({"a": [1.0, 2.0]})
    with ml.start_run():
        info = ml.pyfunc.log_model(name="add_n", python_model=_python_model(ml, 1), pip_requirements=REQS,
                                   signature=ml.models.infer_signature(frame, frame, params={"extra": 0}))
    body = {"dataframe_split": {"columns": ["a"], "data": [[1.0], [2.0]]}, "params": {"extra": 10}}
    assert ml.models.validate_serving_input(info.model_uri, body)["a"].tolist() == [12.0, 13.0]
    body_text = json.dumps({"dataframe_records": [{"a": 5.0}]})
    assert ml.models.validate_serving_input(info.model_uri, body_text)["a"].tolist() == [6.0]
    with pytest.raises(ml.MlflowException) as bad:
        ml.models.validate_serving_input(info.model_uri, {"rows": [[1.0]]})
    assert error_code(bad.value) == "BAD_REQUEST"


# ---- scripts as users write them (MLflow's docs and tutorials): sweeps, searches, artifacts, the client ----


def test_a_sweep_of_nested_runs_read_back_as_a_frame(ml: types.ModuleType) -> None:
    """MLflow's hyperparameter-tuning pattern: a parent run, a nested run per candidate, then
    pandas on ``search_runs``: the parent's children, the best by a metric, group summaries."""
    with ml.start_run(run_name="sweep") as parent:
        for alpha, rmse in ((0.01, 3.0), (0.1, 2.5), (1.0, 2.0), (10.0, 4.0)):
            with ml.start_run(run_name=f"alpha_{alpha}", nested=True):
                ml.log_params({"alpha": alpha, "solver": "auto"})
                ml.log_metric("rmse", rmse)
                ml.set_tag("stage", "candidate")
    runs = ml.search_runs(filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'", order_by=["metrics.rmse ASC"])
    assert runs["tags.mlflow.runName"].tolist() == ["alpha_1.0", "alpha_0.1", "alpha_0.01", "alpha_10.0"]
    runs["alpha"] = runs["params.alpha"].astype(float)
    assert runs.loc[runs["metrics.rmse"].idxmin(), "alpha"] == 1.0
    top2 = ml.search_runs(filter_string="tags.stage = 'candidate'", order_by=["metrics.rmse ASC"], max_results=2)
    assert top2["params.alpha"].tolist() == ["1.0", "0.1"]
    everything = ml.search_runs()
    assert len(everything) == 5 and int(everything["tags.mlflow.parentRunId"].isna().sum()) == 1
    summary = runs.groupby("params.solver")["metrics.rmse"].agg(["min", "max", "count"])
    assert summary.loc["auto"].tolist() == [2.0, 4.0, 4]


def test_search_runs_filter_strings_users_write(ml: types.ModuleType) -> None:
    """Filters on params, metrics, tags and attributes as MLflow's search documentation writes
    them: ``!=``, ``LIKE``/``ILIKE``, ``IN``, quoted keys, ``run_name``, ``status``, times."""
    ids = {}
    for model, lr, acc in (("cnn", 0.01, 0.91), ("cnn", 0.1, 0.85), ("mlp", 0.01, 0.78), ("mlp", 0.001, 0.82)):
        with ml.start_run(run_name=f"{model}-{lr}") as run:
            ml.log_params({"model": model, "lr": lr})
            ml.log_metric("accuracy", acc)
            ml.set_tag("team", "vision" if model == "cnn" else "tabular")
            if lr == 0.001:
                ml.set_tag("best", "maybe")
        ids[run.info.run_name] = run.info.run_id
    names = {v: k for k, v in ids.items()}

    def found(filter_string: str) -> list[str]:
        return sorted(names[r] for r in ml.search_runs(filter_string=filter_string)["run_id"])

    assert found("params.model != 'cnn'") == ["mlp-0.001", "mlp-0.01"]
    assert found("metrics.accuracy >= 0.85 AND params.model = 'cnn'") == ["cnn-0.01", "cnn-0.1"]
    assert found("attributes.run_name = 'mlp-0.01'") == found("run_name = 'mlp-0.01'") == ["mlp-0.01"]
    assert len(found("attributes.status = 'FINISHED'")) == 4
    assert found("params.lr LIKE '0.0%'") == ["cnn-0.01", "mlp-0.001", "mlp-0.01"]
    assert found("tags.team ILIKE 'VIS%'") == ["cnn-0.01", "cnn-0.1"]
    assert found(f"attributes.run_id IN ('{ids['cnn-0.01']}', '{ids['mlp-0.001']}')") == ["cnn-0.01", "mlp-0.001"]
    assert found("tags.`team` = 'vision'") == found('params."model" = "cnn"') == ["cnn-0.01", "cnn-0.1"]
    assert found("tags.best IS NULL") == ["cnn-0.01", "cnn-0.1", "mlp-0.01"]
    assert found("tags.best IS NOT NULL and params.model = 'mlp'") == found("params.model is not null and tags.best = 'maybe'")
    assert found("params.nothing IS NULL") == sorted(ids) and found("params.lr IS NULL") == []
    since = ml.get_run(ids["mlp-0.01"]).info.start_time
    assert found(f"attributes.start_time >= {since}") == ["mlp-0.001", "mlp-0.01"]
    ordered = ml.search_runs(order_by=["params.model ASC", "metrics.accuracy DESC"])
    assert [names[r] for r in ordered["run_id"]] == ["cnn-0.01", "cnn-0.1", "mlp-0.001", "mlp-0.01"]
    assert [names[r] for r in ml.search_runs(order_by=["run_name"])["run_id"]] == sorted(ids)
    for bad in ("metrics.accuracy >>> 1", "foo.bar = 1", "metrics.accuracy IS NULL"):
        with pytest.raises(ml.exceptions.MlflowException) as e:
            ml.search_runs(filter_string=bad)
        assert error_code(e.value) == "INVALID_PARAMETER_VALUE"


def test_view_types_by_name_and_searches_of_deleted_runs(ml: types.ModuleType) -> None:
    ViewType = ml.entities.ViewType
    exp_id = _exp_id(ml)
    ids = []
    for i in range(3):
        with ml.start_run(run_name=f"r{i}") as run:
            ml.log_metric("score", i)
        ids.append(run.info.run_id)
    ml.MlflowClient().delete_run(ids[0])
    got = {ViewType.to_string(vt): sorted(ml.search_runs([exp_id], filter_string="run_name LIKE 'r_'", run_view_type=vt)[
        "tags.mlflow.runName"]) for vt in (ViewType.ACTIVE_ONLY, ViewType.DELETED_ONLY, ViewType.ALL)}
    assert got == {"active_only": ["r1", "r2"], "deleted_only": ["r0"], "all": ["r0", "r1", "r2"]}
    assert ViewType.from_string("all") == ViewType.ALL and ViewType.from_string("deleted_only") == ViewType.DELETED_ONLY
    assert ml.MlflowClient().get_run(ids[0]).info.lifecycle_stage == "deleted"


def test_figures_and_images_read_back_as_images(ml: types.ModuleType) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    image = np.zeros((20, 30, 3), dtype=np.uint8)
    image[:, :15] = [255, 0, 0]
    with ml.start_run() as run:
        fig, ax = plt.subplots()
        ax.plot([0, 1, 2], [2, 3, 1])
        ml.log_figure(fig, "figures/loss.png")
        ml.log_figure(fig, "figures/loss.svg")
        plt.close(fig)
        ml.log_image(image, "images/red_half.png")
        ml.log_image(Image.fromarray(image).convert("L"), artifact_file="images/gray.png")
        ml.log_image(np.linspace(0, 1, 100, dtype=np.float32).reshape(10, 10), "images/ramp.png")
    rid = run.info.run_id
    assert [(f.path, f.is_dir) for f in ml.MlflowClient().list_artifacts(rid)] == [("figures", True), ("images", True)]
    img = ml.artifacts.load_image(f"runs:/{rid}/images/red_half.png")
    assert (img.size, img.mode, img.getpixel((0, 0)), img.getpixel((29, 0))) == ((30, 20), "RGB", (255, 0, 0), (0, 0, 0))
    assert ml.artifacts.load_image(f"runs:/{rid}/images/gray.png").mode == "L"
    ramp = np.asarray(ml.artifacts.load_image(f"runs:/{rid}/images/ramp.png"))
    assert ramp.shape == (10, 10) and (ramp[0, 0], ramp[-1, -1]) == (0, 255)
    assert "<svg" in ml.artifacts.load_text(f"runs:/{rid}/figures/loss.svg")
    assert all(f.file_size > 0 for f in ml.MlflowClient().list_artifacts(rid, "figures"))


def test_log_dict_writes_mlflows_bytes(ml: types.ModuleType, tmp_path: Path) -> None:
    """What ``log_dict`` writes is what MLflow writes: YAML with sorted keys, indented JSON
    with ``str`` for a value JSON has no type for (a date, a numpy integer)."""
    import datetime

    import yaml

    config = {"model": {"layers": [64, 32], "dropout": 0.2}, "optimizer": "adam", "epochs": 10}
    with ml.start_run() as run:
        ml.log_dict(config, "config.json")
        ml.log_dict(config, "conf/config.yaml")
        ml.log_dict({"when": datetime.date(2024, 5, 1), "n": np.int64(3)}, "odd.json")
    rid = run.info.run_id
    yaml_path = ml.artifacts.download_artifacts(run_id=rid, artifact_path="conf/config.yaml", dst_path=str(tmp_path / "d"))
    assert yaml_path == str(tmp_path / "d" / "config.yaml")
    text = Path(yaml_path).read_text()
    assert text.splitlines()[0] == "epochs: 10" and yaml.safe_load(text) == config
    json_path = ml.artifacts.download_artifacts(artifact_uri=f"runs:/{rid}/config.json")
    assert Path(json_path).read_text() == json.dumps(config, indent=2)
    assert ml.artifacts.load_dict(f"runs:/{rid}/odd.json") == {"when": "2024-05-01", "n": "3"}


def test_downloads_land_under_their_last_name(ml: types.ModuleType, tmp_path: Path) -> None:
    """``download_artifacts`` puts a file or directory into ``dst_path`` under its last name
    (scripts open ``<dst>/summary.txt`` after downloading ``a/b/summary.txt``); the client's
    ``download_artifacts`` and a whole run's download keep the run's tree."""
    src = tmp_path / "report"
    for rel, text in {"summary.txt": "ok", "plots/a.txt": "A", "plots/deep/b.txt": "B"}.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)
    with ml.start_run() as run:
        ml.log_artifacts(str(src), artifact_path="outputs")
        ml.log_artifact(str(src / "summary.txt"), artifact_path="a/b/c")
    rid = run.info.run_id
    one = ml.artifacts.download_artifacts(run_id=rid, artifact_path="a/b/c/summary.txt", dst_path=str(tmp_path / "one"))
    assert sorted(os.listdir(tmp_path / "one")) == ["summary.txt"] and Path(one).read_text() == "ok"
    plots = ml.artifacts.download_artifacts(artifact_uri=f"runs:/{rid}/outputs/plots", dst_path=str(tmp_path / "two"))
    assert Path(plots) == tmp_path / "two" / "plots" and sorted(os.listdir(plots)) == ["a.txt", "deep"]
    by_client = ml.MlflowClient().download_artifacts(rid, "outputs/plots/deep", str(tmp_path / "three"))
    assert (Path(by_client) / "b.txt").read_text() == "B" and os.listdir(tmp_path / "three") == ["deep"]
    whole = ml.artifacts.download_artifacts(run_id=rid, dst_path=str(tmp_path / "all"))
    files = sorted(str(p.relative_to(whole)) for p in Path(whole).rglob("*") if p.is_file())
    assert files == ["a/b/c/summary.txt", "outputs/plots/a.txt", "outputs/plots/deep/b.txt", "outputs/summary.txt"]
    assert sorted(f.path for f in ml.artifacts.list_artifacts(artifact_uri=f"runs:/{rid}/outputs")) == [
        "outputs/plots", "outputs/summary.txt"]
    assert ml.MlflowClient().list_artifacts(rid, "outputs/summary.txt") == []


def test_log_table_of_frames_loaded_across_runs(ml: types.ModuleType) -> None:
    ids = []
    for i in range(2):
        with ml.start_run() as run:
            frame = pd.DataFrame({"question": ["q1", "q2"], "answer": [f"a{i}1", f"a{i}2"], "score": [0.5 + i, 0.25]})
            ml.log_table(data=frame, artifact_file="eval/results.json")
        ids.append(run.info.run_id)
    both = ml.load_table("eval/results.json", run_ids=ids, extra_columns=["run_id"])
    assert both.shape == (4, 4) and sorted(both.columns) == ["answer", "question", "run_id", "score"]
    assert both.groupby("run_id")["score"].sum().to_dict() == {ids[0]: 0.75, ids[1]: 1.75}
    assert len(ml.load_table("eval/results.json")) == 4  # every run of the active experiment


def test_client_experiment_management(ml: types.ModuleType) -> None:
    client = ml.MlflowClient()
    suffix = f"x{_exp_id(ml)}"  # no other experiment's name ends with it (MLflow's ids are numbers)
    churn = client.create_experiment(f"churn-{suffix}", tags={"team": "growth", "priority": "high"})
    fraud = client.create_experiment(f"fraud-{suffix}", tags={"team": "risk"})
    scratch = ml.create_experiment(f"scratch-{suffix}", tags={"team": "growth"})
    client.set_experiment_tag(churn, "owner", "ana")
    exp = client.get_experiment(churn)
    assert (exp.lifecycle_stage, exp.tags["team"], exp.tags["owner"]) == ("active", "growth", "ana")
    assert isinstance(exp.creation_time, int) and exp.last_update_time >= exp.creation_time

    def names(**kw: object) -> list[str]:
        return [e.name for e in client.search_experiments(**kw) if e.name.endswith(suffix)]

    assert names(filter_string="tags.team = 'growth'", order_by=["name ASC"]) == [f"churn-{suffix}", f"scratch-{suffix}"]
    assert names(filter_string=f"name LIKE 'f%-{suffix}'") == [f"fraud-{suffix}"]
    assert names(filter_string="attribute.name != 'Default'", order_by=["name DESC"]) == [
        f"scratch-{suffix}", f"fraud-{suffix}", f"churn-{suffix}"]
    client.rename_experiment(churn, f"churn-v2-{suffix}")
    assert client.get_experiment_by_name(f"churn-v2-{suffix}").experiment_id == churn
    client.delete_experiment(scratch)
    assert names(view_type=ml.entities.ViewType.DELETED_ONLY) == [f"scratch-{suffix}"]
    client.restore_experiment(scratch)
    assert ml.set_experiment(experiment_id=fraud).name == f"fraud-{suffix}"
    with ml.start_run() as run:
        pass
    assert run.info.experiment_id == fraud


def test_a_run_driven_by_the_client_with_statuses(ml: types.ModuleType) -> None:
    Metric, Param, RunTag = ml.entities.Metric, ml.entities.Param, ml.entities.RunTag
    client = ml.MlflowClient()
    exp_id = _exp_id(ml)
    run = client.create_run(exp_id, run_name="manual", tags={"source": "script"})
    rid = run.info.run_id
    assert (run.info.status, run.info.run_name, run.data.tags["source"]) == ("RUNNING", "manual", "script")
    client.log_param(rid, "lr", 0.01)
    client.log_metric(rid, "loss", 0.9, step=0)
    client.log_metric(rid, "loss", 0.5, step=1)
    now = int(time.time() * 1000)
    client.log_batch(rid, metrics=[Metric("acc", 0.1 * i, now + i, i) for i in range(5)],
                     params=[Param("batch_size", "32")], tags=[RunTag("dataset", "mnist")])
    client.log_dict(rid, {"a": 1}, "cfg.json")
    client.log_text(rid, "hello", "hello.txt")
    client.set_terminated(rid, status="KILLED")
    got = client.get_run(rid)
    assert (got.info.status, got.data.params, got.data.tags["dataset"]) == ("KILLED", {"batch_size": "32", "lr": "0.01"}, "mnist")
    assert got.info.end_time is not None and [m.step for m in client.get_metric_history(rid, "acc")] == [0, 1, 2, 3, 4]
    assert sorted(f.path for f in client.list_artifacts(rid)) == ["cfg.json", "hello.txt"]
    failing = client.create_run(exp_id, run_name="failing")
    client.set_terminated(failing.info.run_id, "FAILED", end_time=int(time.time() * 1000))
    statuses = sorted(r.info.status for r in client.search_runs([exp_id], filter_string="attributes.status != 'FINISHED'"))
    assert statuses == ["FAILED", "KILLED"]


def test_aliases_moved_deleted_and_looked_up(ml: types.ModuleType) -> None:
    from sklearn.linear_model import LinearRegression

    client = ml.MlflowClient()
    name = f"aliased-{_exp_id(ml)}"
    X = np.arange(6.0).reshape(-1, 1)
    for slope in (1.0, 2.0, 3.0):
        with ml.start_run():
            ml.sklearn.log_model(LinearRegression().fit(X, slope * X.ravel()), name="model", registered_model_name=name,
                                 serialization_format="cloudpickle", pip_requirements=REQS)
    client.set_registered_model_alias(name, "champion", 1)
    client.set_registered_model_alias(name, "challenger", "2")
    assert dict(client.get_registered_model(name).aliases) == {"champion": 1, "challenger": 2} or \
        dict(client.get_registered_model(name).aliases) == {"champion": "1", "challenger": "2"}
    client.set_registered_model_alias(name, "champion", 2)
    assert sorted(client.get_model_version(name, "2").aliases) == ["challenger", "champion"]
    assert client.get_model_version(name, "1").aliases == []
    client.delete_registered_model_alias(name, "challenger")
    client.delete_registered_model_alias(name, "challenger")  # not set any more: nothing happens
    with pytest.raises(ml.exceptions.MlflowException) as e:
        client.get_model_version_by_alias(name, "challenger")
    assert error_code(e.value) == "INVALID_PARAMETER_VALUE"
    assert ml.sklearn.load_model(f"models:/{name}@champion").coef_.round(6).tolist() == [2.0]
    assert ml.sklearn.load_model(f"models:/{name}/latest").coef_.round(6).tolist() == [3.0]
    assert [int(v.version) for v in client.get_latest_versions(name)] == [3]


def test_registry_searches_come_in_pages(ml: types.ModuleType) -> None:
    client = ml.MlflowClient()
    suffix = _exp_id(ml)
    with ml.start_run() as run:
        info = ml.pyfunc.log_model(name="add_n", python_model=_python_model(ml, 1), pip_requirements=REQS)
    for kind in ("sales-forecast", "sales-anomaly", "churn"):
        ml.register_model(info.model_uri, f"{kind}-{suffix}")
    ml.register_model(info.model_uri, f"churn-{suffix}")
    client.update_registered_model(f"churn-{suffix}", description="predicts churn")
    client.update_model_version(f"churn-{suffix}", "2", description="retrained")
    client.set_model_version_tag(f"churn-{suffix}", "2", "validated", "true")
    names, token = [], None
    while True:
        page = client.search_registered_models(filter_string=f"name LIKE '%-{suffix}'", max_results=2, page_token=token)
        names += [m.name for m in page]
        token = page.token
        if not token:
            break
    assert names == sorted(f"{k}-{suffix}" for k in ("sales-forecast", "sales-anomaly", "churn"))
    first = client.search_model_versions(f"name = 'churn-{suffix}'", max_results=1, order_by=["version_number ASC"])
    assert [v.version for v in first] in ([1], ["1"]) and first.token
    rest = client.search_model_versions(f"name = 'churn-{suffix}'", max_results=1, order_by=["version_number ASC"],
                                        page_token=first.token)
    assert [(int(v.version), v.description) for v in rest] == [(2, "retrained")] and not rest.token
    tagged = client.search_model_versions(f"name = 'churn-{suffix}' and tags.validated = 'true'")
    assert [int(v.version) for v in tagged] == [2]
    assert client.get_registered_model(f"churn-{suffix}").description == "predicts churn"
    assert sorted(int(v.version) for v in client.search_model_versions(f"run_id = '{run.info.run_id}'")
                  if v.name.endswith(suffix)) == [1, 1, 1, 2]
    assert [m.name for m in ml.search_registered_models(filter_string=f"name = 'churn-{suffix}'")] == [f"churn-{suffix}"]


def test_deleting_versions_and_registered_models(ml: types.ModuleType) -> None:
    client = ml.MlflowClient()
    name = f"temp-{_exp_id(ml)}"
    with ml.start_run() as run:
        ml.pyfunc.log_model(name="add_n", python_model=_python_model(ml, 1), pip_requirements=REQS)
    uri = f"runs:/{run.info.run_id}/add_n"
    rm = client.create_registered_model(name, tags={"purpose": "test"}, description="scratch")
    assert (rm.tags, rm.description) == ({"purpose": "test"}, "scratch")
    for _ in range(3):
        mv = client.create_model_version(name, uri, run.info.run_id, description="v")
    assert int(mv.version) == 3
    client.set_registered_model_alias(name, "prod", "2")
    client.delete_model_version(name, "2")
    assert [int(v.version) for v in client.search_model_versions(f"name = '{name}'", order_by=["version_number"])] == [1, 3]
    assert dict(client.get_registered_model(name).aliases) == {}
    with pytest.raises(ml.exceptions.MlflowException) as e:
        client.get_model_version(name, "2")
    assert error_code(e.value) == "RESOURCE_DOES_NOT_EXIST"
    assert int(client.create_model_version(name, uri, run.info.run_id).version) == 4  # numbers are never reused
    client.delete_registered_model(name)
    with pytest.raises(ml.exceptions.MlflowException) as e:
        client.get_registered_model(name)
    assert error_code(e.value) == "RESOURCE_DOES_NOT_EXIST"
    assert list(client.search_registered_models(filter_string=f"name = '{name}'")) == []


def test_schema_accessors_and_the_saved_input_example(ml: types.ModuleType) -> None:
    train = pd.DataFrame({"age": [25, 40, 60], "income": [30000.0, 50000.0, 80000.0], "city": ["a", "b", "c"]})
    signature = ml.models.infer_signature(train, pd.DataFrame({"score": [1.0, 2.0, 3.0]}))
    schema = signature.inputs
    assert [str(t) for t in schema.numpy_types()] == ["int64", "float64", "<U0"]
    assert len(schema.input_types()) == 3 and list(schema.input_types_dict()) == ["age", "income", "city"]
    assert list(schema.input_dict()) == ["age", "income", "city"] and schema.required_input_names() == ["age", "income", "city"]
    assert schema.optional_input_names() == []
    with ml.start_run():
        info = ml.pyfunc.log_model(name="add_n", python_model=_python_model(ml, 1), signature=signature,
                                   input_example=train.head(2), pip_requirements=REQS)
    model = ml.models.Model.load(info.model_uri)
    example = model.load_input_example(ml.artifacts.download_artifacts(info.model_uri))
    assert example.to_dict(orient="list") == {"age": [25, 40], "income": [30000.0, 50000.0], "city": ["a", "b"]}
    assert str(example["age"].dtype) == "int64"
    with pytest.raises(ml.exceptions.MlflowException) as e:
        ml.pyfunc.load_model(info.model_uri).predict(train.drop(columns=["income"]))
    assert error_code(e.value) == "INVALID_PARAMETER_VALUE"


def test_signatures_as_dicts(ml: types.ModuleType) -> None:
    """What scripts print and compare: a signature's schemas and params as MLflow's dicts."""
    X = np.array([[1.0, 3.0], [2.0, 2.0]])
    tensors = ml.models.infer_signature(X, X)
    assert tensors.inputs.is_tensor_spec() and [str(t) for t in tensors.inputs.numpy_types()] == ["float64"]
    assert tensors.inputs.to_dict() == [{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": (-1, 2)}}]
    named = ml.models.infer_signature({"a": np.array([1.0]), "b": np.array([2])}).inputs.to_dict()
    assert named == [{"name": "a", "type": "tensor", "tensor-spec": {"dtype": "float64", "shape": (-1,)}},
                     {"name": "b", "type": "tensor", "tensor-spec": {"dtype": "int64", "shape": (-1,)}}]
    assert list(named[0]) == ["name", "type", "tensor-spec"]
    assert str(tensors) == "inputs: \n  [Tensor('float64', (-1, 2))]\noutputs: \n  [Tensor('float64', (-1, 2))]\nparams: \n  None\n"
    columns = ml.models.infer_signature(pd.DataFrame({"a": [1.0], "s": ["x"]})).inputs
    assert repr(columns) == "['a': double (required), 's': string (required)]"
    signature = ml.models.infer_signature(pd.DataFrame({"p": [0.2]}), [0],
                                          params={"threshold": 0.5, "invert": False, "labels": ["neg", "pos"]})
    assert signature.params.to_dict() == [
        {"name": "threshold", "default": 0.5, "shape": None, "type": "double"},
        {"name": "invert", "default": False, "shape": None, "type": "boolean"},
        {"name": "labels", "default": ["neg", "pos"], "shape": (-1,), "type": "string"}]
    assert list(signature.params.to_dict()[0]) == ["name", "default", "shape", "type"]
    assert list(signature.to_dict()) == ["inputs", "outputs", "params"]


def test_client_searches_paged_to_the_end(ml: types.ModuleType) -> None:
    client = ml.MlflowClient()
    suffix = _exp_id(ml)
    exp_id = ml.create_experiment(f"many-{suffix}")
    for i in range(7):
        with ml.start_run(experiment_id=exp_id, run_name=f"r{i}"):
            ml.log_metric("i", i)
    seen, token, pages = [], None, 0
    while True:
        page = client.search_runs([exp_id], order_by=["metrics.i ASC"], max_results=3, page_token=token)
        seen += [r.info.run_name for r in page]
        pages, token = pages + 1, page.token
        if not token:
            break
    assert (pages, seen) == (3, [f"r{i}" for i in range(7)])
    for i in range(5):
        client.create_experiment(f"paged-{i}-{suffix}")
    names, token = [], None
    while True:
        page = client.search_experiments(max_results=2, page_token=token, filter_string=f"name LIKE 'paged-%-{suffix}'",
                                         order_by=["name"])
        names += [e.name for e in page]
        token = page.token
        if not token:
            break
    assert names == [f"paged-{i}-{suffix}" for i in range(5)]


def test_the_runs_of_a_deleted_experiment(ml: types.ModuleType) -> None:
    """A deleted experiment's runs count as deleted (searches by view type, ``get_run``'s
    lifecycle stage) until it is restored; it takes no new runs and cannot be set active.
    Restoring it brings back the runs deleted with it; a run deleted on its own stays deleted
    in casstore (MLflow restores it too; casstore refuses ``restore_run``)."""
    ViewType = ml.entities.ViewType
    exp_id = ml.create_experiment(f"to-delete-{_exp_id(ml)}")
    with ml.start_run(experiment_id=exp_id, run_name="kept") as kept:
        ml.log_metric("m", 1)
    with ml.start_run(experiment_id=exp_id, run_name="dropped") as dropped:
        pass
    ml.delete_run(dropped.info.run_id)
    ml.delete_experiment(exp_id)
    assert ml.get_experiment(exp_id).lifecycle_stage == "deleted"
    assert len(ml.search_runs([exp_id])) == 0
    assert sorted(ml.search_runs([exp_id], run_view_type=ViewType.DELETED_ONLY)["tags.mlflow.runName"]) == ["dropped", "kept"]
    assert len(ml.search_runs([exp_id], run_view_type=ViewType.ALL)) == 2
    assert kept.info.run_id not in set(ml.search_runs(search_all_experiments=True)["run_id"])
    assert ml.get_run(kept.info.run_id).info.lifecycle_stage == "deleted"
    with pytest.raises(ml.exceptions.MlflowException) as e:
        ml.set_experiment(ml.get_experiment(exp_id).name)
    assert error_code(e.value) == "INVALID_PARAMETER_VALUE"
    with pytest.raises(ml.exceptions.MlflowException):
        with ml.start_run(experiment_id=exp_id):
            pass
    ml.restore_experiment(exp_id)
    assert ml.get_experiment(exp_id).lifecycle_stage == "active"
    assert ml.get_run(kept.info.run_id).info.lifecycle_stage == "active"
    restored = sorted(ml.search_runs([exp_id])["tags.mlflow.runName"])
    assert restored == (["kept"] if ml.IS_CASSTORE else ["dropped", "kept"])


def test_the_serving_input_example_checked_before_deployment(ml: types.ModuleType, tmp_path: Path) -> None:
    """MLflow's deployment check: the input example in the server's request form
    (``convert_input_example_to_serving_input``, ``load_serving_example``) scored by
    ``validate_serving_input``; the loaded model names its loader (each its own module);
    experiments turn into dicts."""
    from sklearn.linear_model import LinearRegression

    X = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [0.0, 1.0, 0.0]})
    with ml.start_run() as run:
        info = ml.sklearn.log_model(LinearRegression().fit(X, [1.0, 2.0, 3.0]), name="model", input_example=X.head(2),
                                    pip_requirements=REQS, serialization_format="cloudpickle")
    serving_input = ml.models.convert_input_example_to_serving_input(X.head(2))
    assert json.loads(serving_input) == {"dataframe_split": {"columns": ["a", "b"], "data": [[1.0, 0.0], [2.0, 1.0]]}}
    assert serving_input.startswith('{\n  "dataframe_split": {\n    "columns": [')
    assert ml.models.validate_serving_input(info.model_uri, serving_input).round(6).tolist() == [1.0, 2.0]
    assert json.loads(ml.models.convert_input_example_to_serving_input(np.array([[1.0, 2.0]]))) == {"inputs": [[1.0, 2.0]]}
    assert ml.models.convert_input_example_to_serving_input(None) is None
    utils = importlib.import_module(f"{ml.__name__}.models.utils")
    assert utils.load_serving_example(info.model_uri) == serving_input
    local = ml.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path / "model"))
    assert utils.load_serving_example(local) == serving_input
    assert ml.pyfunc.load_model(info.model_uri).loader_module == f"{ml.__name__}.sklearn"
    exp = dict(ml.get_experiment(run.info.experiment_id))
    assert exp["experiment_id"] == run.info.experiment_id and exp["lifecycle_stage"] == "active"
    assert {"name", "tags", "creation_time", "last_update_time", "artifact_location"} <= set(exp)


# ---- MLflow 3's types, a run's model outputs and inputs, metrics linked to a logged model ------------------


def test_datatype_is_mlflows_enum(ml: types.ModuleType) -> None:
    """``mlflow.types.DataType`` is an enum: its members, their numbers and the types they
    hold; a signature's columns and params carry members, and a type name is taken for one."""
    import datetime
    import enum

    DataType = ml.types.DataType
    assert issubclass(DataType, enum.Enum) and DataType.all_types() == list(DataType)
    assert [(t.name, t.value) for t in DataType] == [("boolean", 1), ("integer", 2), ("long", 3), ("float", 4),
                                                      ("double", 5), ("string", 6), ("binary", 7), ("datetime", 8)]
    assert DataType["long"] is DataType.long and DataType(5) is DataType.double
    assert (repr(DataType.long), str(DataType.long)) == ("long", "DataType.long")
    assert [t.to_numpy() for t in (DataType.boolean, DataType.integer, DataType.long, DataType.float, DataType.double)] == [
        np.dtype("bool"), np.dtype("int32"), np.dtype("int64"), np.dtype("float32"), np.dtype("float64")]
    assert (DataType.string.to_numpy(), DataType.binary.to_numpy()) == (np.dtype("str"), np.dtype("bytes"))
    assert DataType.string.to_pandas() is object and DataType.double.to_pandas() == np.dtype("float64")
    assert [t.to_python() for t in DataType] == [bool, int, int, float, float, str, bytes, datetime.date]
    assert DataType.from_numpy_type(np.dtype("int32")) is DataType.integer
    frame = pd.DataFrame({"n": [1, 2], "x": [0.5, 1.5], "s": ["a", "b"], "ok": [True, False]})
    signature = ml.models.infer_signature(frame, params={"threshold": 0.5, "k": 3})
    assert signature.inputs.input_types() == [DataType.long, DataType.double, DataType.string, DataType.boolean]
    assert signature.inputs.input_types_dict()["x"] is DataType.double and signature.inputs.inputs[0].type is DataType.long
    assert [p.dtype for p in signature.params] == [DataType.double, DataType.long]
    ColSpec = ml.types.ColSpec
    assert ColSpec("double", "x") == ColSpec(DataType.double, "x") and ColSpec("double", "x").type is DataType.double
    assert ColSpec(DataType.long, "n").to_dict() == {"type": "long", "name": "n", "required": True}
    by_type = {DataType.long: "int", DataType.double: "float"}  # what scripts key dicts by
    assert [by_type.get(t, "other") for t in signature.inputs.input_types()] == ["int", "float", "other", "other"]


def test_run_outputs_and_model_inputs(ml: types.ModuleType) -> None:
    """MLflow 3: ``run.outputs.model_outputs`` lists the models a run logged (with their
    step); a run that logs metrics of another run's model has it in ``inputs.model_inputs``."""
    with ml.start_run() as producer:
        first = ml.pyfunc.log_model(name="add_1", python_model=_python_model(ml, 1), pip_requirements=REQS)
        second = ml.pyfunc.log_model(name="add_2", python_model=_python_model(ml, 2), pip_requirements=REQS, step=3)
    got = ml.get_run(producer.info.run_id)
    # (MLflow lists them in no set order)
    assert sorted((o.model_id, o.step) for o in got.outputs.model_outputs) == sorted([(first.model_id, 0), (second.model_id, 3)])
    assert got.inputs.model_inputs == []
    assert sorted(got.to_dictionary()["outputs"]["model_outputs"], key=lambda o: o["step"]) == [
        {"model_id": first.model_id, "step": 0}, {"model_id": second.model_id, "step": 3}]
    with ml.start_run() as evaluator:
        ml.log_metric("holdout_rmse", 0.4, model_id=second.model_id)
    used = ml.get_run(evaluator.info.run_id)
    assert [m.model_id for m in used.inputs.model_inputs] == [second.model_id]
    assert used.outputs.model_outputs == [] and used.data.metrics == {"holdout_rmse": 0.4}
    [found] = ml.search_runs([producer.info.experiment_id], filter_string=f"attributes.run_id = '{producer.info.run_id}'",
                             output_format="list")
    assert sorted(o.model_id for o in found.outputs.model_outputs) == sorted([first.model_id, second.model_id])
    metrics = ml.get_logged_model(second.model_id).metrics
    assert [(m.key, m.value, m.run_id) for m in metrics] == [("holdout_rmse", 0.4, evaluator.info.run_id)]
    with ml.start_run() as reader:
        ml.log_input(model=ml.entities.LoggedModelInput(first.model_id))
    assert [m.model_id for m in ml.get_run(reader.info.run_id).inputs.model_inputs] == [first.model_id]


def test_metrics_logged_for_a_model_are_the_models(ml: types.ModuleType) -> None:
    """``log_metric(..., model_id=...)`` and ``log_metrics(..., model_id=...)`` at any step make
    the values the logged model's (``get_logged_model``, ``search_logged_models``); the run
    has them too. A metric logged without ``model_id`` at another step is the run's alone."""
    with ml.start_run() as run:
        info = ml.pyfunc.log_model(name="add_n", python_model=_python_model(ml, 1), pip_requirements=REQS)
        for epoch, loss in enumerate([0.9, 0.5, 0.3], start=1):
            ml.log_metric("val_loss", loss, step=epoch, model_id=info.model_id)
            ml.log_metric("train_loss", loss / 2, step=epoch)
        ml.log_metrics({"f1": 0.8, "auc": 0.9}, step=7, model_id=info.model_id)
    model = ml.get_logged_model(info.model_id)
    assert sorted((m.key, m.step, m.value) for m in model.metrics) == [
        ("auc", 7, 0.9), ("f1", 7, 0.8), ("val_loss", 1, 0.9), ("val_loss", 2, 0.5), ("val_loss", 3, 0.3)]
    assert {m.model_id for m in model.metrics} == {info.model_id} and {m.run_id for m in model.metrics} == {run.info.run_id}
    assert ml.get_run(run.info.run_id).data.metrics == {"val_loss": 0.3, "train_loss": 0.15, "f1": 0.8, "auc": 0.9}
    assert [m.model_id for m in ml.search_logged_models(filter_string="metrics.f1 > 0.5", output_format="list")] == [
        info.model_id]
    assert ml.search_logged_models(filter_string="metrics.train_loss > 0", output_format="list") == []
    dataset = ml.data.from_pandas(pd.DataFrame({"x": [1.0]}), name="holdout")
    with ml.start_run() as scored:
        ml.log_metric("acc", 0.7, model_id=info.model_id, dataset=dataset)
        ml.log_metric("acc_again", 0.7, dataset=dataset)
    [di] = ml.get_run(scored.info.run_id).inputs.dataset_inputs
    assert (di.dataset.name, di.dataset.digest, di.tags) == ("holdout", dataset.digest, [])


def test_dataset_sources_of_each_kind(ml: types.ModuleType, tmp_path: Path) -> None:
    """``from_pandas(source=...)`` gives MLflow's source class for S3, a local file, HTTP or
    code; what the run records and ``get_source`` gives back is the same kind of source."""
    df = pd.DataFrame({"x": [1.0, 2.0], "y": [0, 1]})
    uri = "s3://my-bucket/data/train.csv"
    s3 = ml.data.from_pandas(df, source=uri, targets="y", name="train")
    assert (type(s3.source).__name__, s3.source.uri, s3.source._get_source_type()) == ("S3ArtifactDatasetSource", uri, "s3")
    assert s3.source.to_dict() == {"uri": uri} and json.loads(s3.source.to_json()) == {"uri": uri}
    assert (s3.to_dict()["source_type"], json.loads(s3.to_dict()["source"])) == ("s3", {"uri": uri})
    with ml.start_run() as run:
        ml.log_input(s3, context="training")
    [di] = ml.get_run(run.info.run_id).inputs.dataset_inputs
    assert (di.dataset.source_type, json.loads(di.dataset.source)) == ("s3", {"uri": uri})
    source = ml.data.get_source(di)
    assert (type(source).__name__, source.uri) == ("S3ArtifactDatasetSource", uri)
    assert isinstance(source, importlib.import_module(f"{ml.__name__}.data.dataset_source").DatasetSource)
    assert type(source).from_json(source.to_json()).uri == uri
    (tmp_path / "train.csv").write_text(df.to_csv(index=False))
    local = ml.data.from_pandas(df, source=str(tmp_path / "train.csv")).source
    assert (type(local).__name__, local._get_source_type(), local.to_dict()) == (
        "LocalArtifactDatasetSource", "local", {"uri": str(tmp_path / "train.csv")})
    assert pd.read_csv(local.load(dst_path=str(tmp_path / "copy"))).equals(df)
    http = ml.data.from_pandas(df, source="https://example.com/train.csv").source
    assert (type(http).__name__, http._get_source_type(), http.url) == ("HTTPDatasetSource", "http", "https://example.com/train.csv")
    assert isinstance(http, importlib.import_module(f"{ml.__name__}.data.http_dataset_source").HTTPDatasetSource)
    code = ml.data.from_pandas(df).source
    assert (type(code).__name__, code._get_source_type(), list(code.to_dict())) == ("CodeDatasetSource", "code", ["tags"])


def test_the_mlmodel_file_and_the_model_it_describes(ml: types.ModuleType, tmp_path: Path) -> None:
    """The ``MLmodel`` fields MLflow 3 writes for a scikit-learn and a custom model, and what
    ``Model.load`` gives of them: ``metadata``, ``model_id``, ``model_size_bytes``, the
    signature inferred from an input example (one value per row: a column output)."""
    import yaml
    from sklearn.linear_model import LinearRegression

    X = pd.DataFrame({"a": [1.0, 2.0, 3.0]})
    with ml.start_run() as run:
        skl = ml.sklearn.log_model(LinearRegression().fit(X, [1.0, 2.0, 3.0]), name="skl", pip_requirements=REQS,
                                   metadata={"author": "ana"}, input_example=X.head(1), serialization_format="cloudpickle")
        pyf = ml.pyfunc.log_model(name="pyf", python_model=_python_model(ml, 1), pip_requirements=REQS, metadata={"k": 1})
    files = {}
    for info, meta in ((skl, {"author": "ana"}), (pyf, {"k": 1})):
        local = ml.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path / info.name))
        written = files[info.name] = yaml.safe_load((Path(local) / "MLmodel").read_text())
        assert {"artifact_path", "flavors", "metadata", "model_size_bytes", "model_uuid", "run_id", "utc_time_created"} <= set(written)
        assert (written["metadata"], written["run_id"], info.metadata) == (meta, run.info.run_id, meta)
        model = ml.models.Model.load(info.model_uri)
        assert (model.metadata, model.model_id, model.run_id) == (meta, info.model_id, run.info.run_id)
        assert isinstance(model.model_size_bytes, int) and model.model_size_bytes > 0
        assert (model.env_vars, model.prompts, model.resources) == (None, None, None)
    written = files["skl"]
    assert (written["is_signature_from_type_hint"], written["type_hint_from_example"]) == (False, False)
    assert json.loads(written["signature"]["outputs"]) == [{"type": "double", "required": True}]
    assert skl.signature.outputs.input_types() == [ml.types.DataType.double]


def test_an_input_example_with_params(ml: types.ModuleType) -> None:
    """``input_example=(data, params)``: the signature gets the params, the example is saved
    with them beside it (``load_input_example_params``) and in the serving example."""
    class Scaled(ml.pyfunc.PythonModel):  # type: ignore[name-defined,misc]
        def predict(self, context: object, model_input: pd.DataFrame, params: dict[str, int] | None = None) -> list[int]:
            return [len(s) * (params or {}).get("k", 1) for s in model_input["text"]]

    with ml.start_run():
        info = ml.pyfunc.log_model(name="m", python_model=Scaled(), pip_requirements=REQS,
                                   input_example=(pd.DataFrame({"text": ["ab", "c"]}), {"k": 2}))
    model = ml.pyfunc.load_model(info.model_uri)
    assert list(model.predict(pd.DataFrame({"text": ["abc"]}))) == [6]  # the example's k is the default
    assert list(model.predict(pd.DataFrame({"text": ["abc"]}), params={"k": 3})) == [9]
    assert model.metadata.get_params_schema().to_dict() == [{"name": "k", "default": 2, "shape": None, "type": "long"}]
    described = ml.models.Model.load(info.model_uri)
    local = ml.artifacts.download_artifacts(info.model_uri)
    assert described.load_input_example(local)["text"].tolist() == ["ab", "c"]
    assert described.load_input_example_params(local) == {"k": 2} and described.saved_input_example_info["params"] == "true"
    assert json.loads((Path(local) / "serving_input_example.json").read_text()) == {
        "dataframe_split": {"columns": ["text"], "data": [["ab"], ["c"]]}, "params": {"k": 2}}
    serving = ml.models.convert_input_example_to_serving_input((pd.DataFrame({"t": ["a"]}), {"k": 2}))
    assert json.loads(serving)["params"] == {"k": 2}


def test_model_info_names_the_mlmodels_flavors(ml: types.ModuleType) -> None:
    """``log_model``'s ``ModelInfo``: the flavors as ``MLmodel`` writes them (MLflow's loader
    modules), the metadata, the registered version."""
    registered = f"info-{_exp_id(ml)}"
    with ml.start_run() as run:
        info = ml.pyfunc.log_model(name="m", python_model=_python_model(ml, 1), pip_requirements=REQS,
                                   metadata={"owner": "ana"}, registered_model_name=registered)
    assert (info.run_id, info.name, info.metadata, info.registered_model_version) == (run.info.run_id, "m", {"owner": "ana"}, 1)
    assert info.flavors["python_function"]["loader_module"] == "mlflow.pyfunc.model"
    assert info.flavors == ml.models.Model.load(info.model_uri).flavors == ml.models.get_model_info(info.model_uri).flavors


def test_search_logged_models_ordered(ml: types.ModuleType) -> None:
    """MLflow 3's ``search_logged_models(order_by=[{"field_name": ..., "ascending": ...}])``."""
    with ml.start_run() as run:
        ids = {}
        for step, (name, rmse) in enumerate((("b", 0.3), ("a", 0.5), ("c", 0.1))):  # a step each: metrics apart
            ids[name] = ml.pyfunc.log_model(name=name, python_model=_python_model(ml, 1), pip_requirements=REQS,
                                            step=step).model_id
            ml.log_metric("rmse", rmse, step=step, model_id=ids[name])
    exp = [run.info.experiment_id]

    def names(order_by: list[dict[str, object]]) -> list[str]:
        return [m.name for m in ml.search_logged_models(experiment_ids=exp, order_by=order_by, output_format="list")]

    assert names([{"field_name": "name", "ascending": True}]) == ["a", "b", "c"]
    assert names([{"field_name": "name", "ascending": False}]) == ["c", "b", "a"]
    assert names([{"field_name": "metrics.rmse", "ascending": True}]) == ["c", "b", "a"]
    frame = ml.search_logged_models(experiment_ids=exp, order_by=[{"field_name": "creation_timestamp", "ascending": True}])
    assert frame["name"].tolist() == ["b", "a", "c"] and frame["model_id"].tolist() == [ids["b"], ids["a"], ids["c"]]


def test_a_numpy_datasets_profile(ml: types.ModuleType) -> None:
    dataset = ml.data.from_numpy(np.zeros((4, 2)), targets=np.ones(4), name="n")
    assert dataset.profile == {"features_shape": (4, 2), "features_size": 8, "features_nbytes": 64,
                               "targets_shape": (4,), "targets_size": 4, "targets_nbytes": 32}
    with ml.start_run() as run:
        ml.log_input(dataset, context="training")
    [di] = ml.get_run(run.info.run_id).inputs.dataset_inputs
    assert json.loads(di.dataset.profile)["features_shape"] == [4, 2]
