"""The fluent tracking API and the client: MLflow's behaviour, with immutability and a seal."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import casstore
from casstore.exceptions import ImmutableArtifactError, InvalidInputError, ObjectNotFoundError, RunStateError
from casstore.tracking import fluent, uri

from tracking_helpers import run_python, tracking  # noqa: F401  (fixture)


def test_start_run_context_manager_ends_and_seals(tracking: str) -> None:
    with casstore.start_run(run_name="first") as run:
        assert casstore.active_run() is run
        assert run.info.status == "RUNNING" and run.info.run_name == "first"
        casstore.log_param("C", 0.1)
        casstore.log_metric("accuracy", 0.9)
        assert casstore.get_run().data.params["C"] == "0.1"
        assert casstore.get_run().data.metrics["accuracy"] == 0.9
    assert casstore.active_run() is None
    done = casstore.get_run(run.info.run_id)
    assert done.info.status == "FINISHED" and re.fullmatch(r"[0-9a-f]{64}", done.info.digest or "")
    assert done.info.end_time is not None and done.info.end_time >= done.info.start_time
    assert casstore.last_active_run().info.run_id == run.info.run_id  # type: ignore[union-attr]
    assert casstore.get_run().info.run_id == run.info.run_id  # no active run: the last one


def test_exception_in_the_block_ends_the_run_failed(tracking: str) -> None:
    with pytest.raises(ValueError, match="boom"):
        with casstore.start_run() as run:
            casstore.log_metric("loss", 1.5)
            raise ValueError("boom")
    failed = casstore.get_run(run.info.run_id)
    assert failed.info.status == "FAILED" and failed.data.metrics == {"loss": 1.5}
    assert failed.info.digest is not None


def test_end_run_with_status_and_nested_runs(tracking: str) -> None:
    parent = casstore.start_run(run_name="parent")
    with pytest.raises(RunStateError, match="already active"):
        casstore.start_run()
    child = casstore.start_run(nested=True)
    assert casstore.active_run() is child
    assert casstore.get_run(child.info.run_id).data.tags["mlflow.parentRunId"] == parent.info.run_id
    casstore.end_run()
    assert casstore.active_run() is parent
    casstore.end_run("KILLED")
    assert casstore.get_run(parent.info.run_id).info.status == "KILLED"
    casstore.end_run()  # no active run: no-op


def test_last_active_run_is_the_run_ended_last_so_the_parent_after_a_nested_child(tracking: str) -> None:
    assert casstore.last_active_run() is None
    with casstore.start_run() as parent:
        assert casstore.last_active_run().info.run_id == parent.info.run_id  # type: ignore[union-attr]
        with casstore.start_run(nested=True) as child:
            assert casstore.get_run().info.run_id == child.info.run_id  # the active run
        assert casstore.last_active_run().info.run_id == parent.info.run_id  # type: ignore[union-attr]
        assert casstore.get_run().info.run_id == parent.info.run_id
    last = casstore.last_active_run()
    assert last is not None and last.info.run_id == parent.info.run_id and last.info.status == "FINISHED"
    assert casstore.get_run().info.run_id == parent.info.run_id
    assert [f.path for f in casstore.list_artifacts()] == []  # the same run
    started = casstore.start_run()
    casstore.end_run()
    assert casstore.last_active_run().info.run_id == started.info.run_id  # type: ignore[union-attr]


def test_a_started_run_that_has_not_ended_is_not_the_last_in_another_thread(tracking: str) -> None:
    import threading

    run = casstore.start_run()
    seen: list[object] = []
    t = threading.Thread(target=lambda: seen.append(casstore.last_active_run()))
    t.start()
    t.join()
    casstore.end_run()
    assert seen == [None]
    assert casstore.last_active_run().info.run_id == run.info.run_id  # type: ignore[union-attr]


def test_numpy_numbers_are_accepted_for_metric_values_steps_and_timestamps(tracking: str) -> None:
    import numpy as np

    with casstore.start_run() as run:
        casstore.log_metric("loss", np.float32(0.5), step=np.int64(2), timestamp=np.int32(1234))
        casstore.log_metrics({"acc": np.float64(0.75)}, step=np.uint8(3))
        casstore.MlflowClient().log_metric(run.info.run_id, "c", np.int64(4), step=np.int16(5))
        casstore.log_metric("whole", 1.0, step=4.0)
        for bad in (True, np.bool_(True), 2.5, "3", np.uint64(2**64 - 1)):
            with pytest.raises(InvalidInputError, match="step must"):
                casstore.log_metric("loss", 1.0, step=bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="timestamp \\(ms\\) must be an integer"):
            casstore.log_metric("loss", 1.0, timestamp=1.5)  # type: ignore[arg-type]
    hist = casstore.get_metric_history(run.info.run_id, "loss")
    assert [(m.value, m.step, m.timestamp) for m in hist] == [(0.5, 2, 1234)]
    assert type(hist[0].step) is int and type(hist[0].timestamp) is int
    assert casstore.get_run(run.info.run_id).data.metrics == {"acc": 0.75, "c": 4.0, "loss": 0.5, "whole": 1.0}


def test_default_experiment_is_there_before_any_run(tracking: str) -> None:
    assert [(e.experiment_id, e.name) for e in casstore.search_experiments()] == [("0", "Default")]
    assert casstore.get_experiment_by_name("Default").experiment_id == "0"  # type: ignore[union-attr]
    assert casstore.get_experiment("0").name == "Default"
    assert casstore.set_experiment(experiment_id="0").name == "Default"
    assert casstore.search_runs(experiment_names=["Default"], output_format="list") == []
    with casstore.start_run() as run:
        pass
    assert run.info.experiment_id == "0"
    assert [e.name for e in casstore.search_experiments()] == ["Default"]


def test_get_run_without_any_run_is_a_clear_error(tracking: str) -> None:
    with pytest.raises(RunStateError, match="pass a run id"):
        casstore.get_run()


@pytest.mark.parametrize(("call", "log"), [
    ("log_params", lambda: casstore.log_params([("lr", 0.1)])),
    ("log_metrics", lambda: casstore.log_metrics([("loss", 0.5)])),
    ("set_tags", lambda: casstore.set_tags(["a"])),
    ("set_experiment_tags", lambda: casstore.set_experiment_tags("team=a")),
])
def test_logging_a_list_where_a_dict_is_taken_is_a_clear_error(tracking: str, call: str, log: object) -> None:
    with casstore.start_run() as run:
        with pytest.raises(InvalidInputError, match=rf"{call} takes a dict of names to values.*not a (list|str)"):
            log()  # type: ignore[operator]
    assert casstore.get_run(run.info.run_id).data.params == {}


def test_start_run_tags_must_be_a_dict(tracking: str) -> None:
    with pytest.raises(InvalidInputError, match=r"start_run\(tags=...\) takes a dict"):
        casstore.start_run(tags=["a"])  # type: ignore[arg-type]
    assert casstore.active_run() is None


def test_params_are_immutable(tracking: str) -> None:
    with casstore.start_run():
        casstore.log_param("solver", "lbfgs")
        casstore.log_param("solver", "lbfgs")
        with pytest.raises(ImmutableArtifactError, match="solver"):
            casstore.log_param("solver", "saga")
        casstore.log_params({"a": 1, "b": "x"})
        assert casstore.get_run().data.params == {"solver": "lbfgs", "a": "1", "b": "x"}


def test_metrics_history_and_batches(tracking: str) -> None:
    with casstore.start_run() as run:
        for step in range(30):
            casstore.log_metric("loss", 1.0 / (step + 1), step=step)
        casstore.log_metrics({"acc": 0.5, "f1": 0.4}, step=2)
        casstore.log_metric("loss", 99.0, step=3, timestamp=123)
    hist = casstore.get_metric_history(run.info.run_id, "loss")
    assert len(hist) == 31 and hist[0].step == 0 and hist[0].value == 1.0
    assert any(m.timestamp == 123 and m.value == 99.0 for m in hist)
    data = casstore.get_run(run.info.run_id).data
    assert data.metrics == {"loss": 1.0 / 30, "acc": 0.5, "f1": 0.4}
    with casstore.start_run():
        with pytest.raises(InvalidInputError, match="number"):
            casstore.log_metric("bad", "NaN-ish")  # type: ignore[arg-type]


_EXIT_WITHOUT_END = "run = mlflow.start_run()\nprint(run.info.run_id)\nlog()\n"
_FAIL_INSIDE = "with mlflow.start_run() as run:\n    print(run.info.run_id, flush=True)\n    log()\n    raise SystemExit(3)\n"


@pytest.mark.parametrize(
    "body, exit_code, status",
    [(_EXIT_WITHOUT_END, 0, "FINISHED"), (_FAIL_INSIDE, 3, "FAILED")],
    ids=["exit-without-end_run", "failed-run"],
)
def test_buffered_metrics_survive_the_end_of_the_process(tracking: str, body: str, exit_code: int, status: str) -> None:
    code = (
        "import sys, casstore as mlflow\n"
        "mlflow.set_tracking_uri(sys.argv[1])\n"
        "def log():\n"
        "    for i in range(7): mlflow.log_metric('m', float(i), step=i)\n"
    ) + body
    out = run_python(code, tracking)
    assert out.returncode == exit_code, out.stderr
    assert "could not end run" not in out.stderr
    run = casstore.get_run(out.stdout.strip())
    assert run.info.status == status  # an open run is ended at exit, as MLflow does
    assert len(casstore.get_metric_history(run.info.run_id, "m")) == 7
    # its summary reached the search index too, although the run ended as the interpreter exited
    assert list((Path(tracking) / "index" / "runs").iterdir())


def test_tags_and_reproducibility_context(tracking: str) -> None:
    with casstore.start_run(run_name="ctx", tags={"team": "ml"}) as run:
        casstore.set_tag("stage", "dev")
        casstore.set_tags({"stage": "prod", "x": 1})
    tags = casstore.get_run(run.info.run_id).data.tags
    assert tags["team"] == "ml" and tags["stage"] == "prod" and tags["x"] == "1"
    assert tags["mlflow.runName"] == "ctx" and tags["mlflow.user"]
    assert tags["casstore.version"] == casstore.__version__
    assert tags["casstore.python"].count(".") == 2 and tags["casstore.host"] and tags["casstore.platform"]
    assert "casstore.lib.numpy" in tags and "mlflow.source.name" in tags


def test_git_commit_and_dirty_state_are_recorded(tracking: str, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e"}
    script = repo / "train.py"
    script.write_text("import sys, casstore as mlflow\nmlflow.set_tracking_uri(sys.argv[1])\n"
                      "with mlflow.start_run() as r:\n    print(r.info.run_id)\n")
    import subprocess

    for cmd in (["git", "init", "-q"], ["git", "add", "train.py"], ["git", "commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=repo, check=True, env={**os.environ, **env})
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    out = run_python(f"import runpy, sys; sys.argv = [{str(script)!r}, sys.argv[1]]; "
                     f"runpy.run_path({str(script)!r}, run_name='__main__')", tracking, cwd=repo)
    assert out.returncode == 0, out.stderr
    tags = casstore.get_run(out.stdout.strip()).data.tags
    assert tags["mlflow.source.git.commit"] == commit and tags["casstore.git.dirty"] == "false"
    assert tags["mlflow.source.name"] == str(script)
    script.write_text(script.read_text() + "# edited\n")
    out = run_python(f"import runpy, sys; sys.argv = [{str(script)!r}, sys.argv[1]]; "
                     f"runpy.run_path({str(script)!r}, run_name='__main__')", tracking, cwd=repo)
    assert casstore.get_run(out.stdout.strip()).data.tags["casstore.git.dirty"] == "true"


def test_resume_an_open_run(tracking: str) -> None:
    run = casstore.start_run()
    casstore.log_param("a", 1)
    rid = run.info.run_id
    fluent._reset()  # forget it in this process, as if it had crashed
    with casstore.start_run(run_id=rid) as again:
        assert again.info.run_id == rid
        casstore.log_param("b", 2)
    done = casstore.get_run(rid)
    assert done.data.params == {"a": "1", "b": "2"} and done.info.status == "FINISHED"
    assert len(casstore.MlflowClient().get_run_seals(rid)) == 1  # resumed before it ended: one seal
    with pytest.raises(ObjectNotFoundError):
        casstore.start_run(run_id="f" * 32)
    with pytest.raises(InvalidInputError, match="not a run id"):
        casstore.start_run(run_id="nope")
    assert casstore.active_run() is None


def test_logging_without_a_run_starts_one(tracking: str) -> None:
    casstore.log_param("auto", "yes")
    run = casstore.active_run()
    assert run is not None
    casstore.end_run()
    assert casstore.get_run(run.info.run_id).data.params == {"auto": "yes"}


def test_experiments(tracking: str) -> None:
    exp = casstore.set_experiment("fraud")
    assert exp.name == "fraud" and casstore.set_experiment("fraud").experiment_id == exp.experiment_id
    with casstore.start_run() as run:
        pass
    assert run.info.experiment_id == exp.experiment_id
    other = casstore.create_experiment("other", tags={"k": "v"})
    assert casstore.get_experiment(other).tags == {"k": "v"}
    assert casstore.get_experiment_by_name("other").experiment_id == other  # type: ignore[union-attr]
    with pytest.raises(InvalidInputError, match="already exists"):
        casstore.create_experiment("other")
    names = [e.name for e in casstore.search_experiments(filter_string="name LIKE 'fr%'")]
    assert names == ["fraud"]
    assert {e.name for e in casstore.search_experiments(order_by=["name DESC"])} >= {"fraud", "other"}
    with pytest.raises(ObjectNotFoundError):
        casstore.set_experiment(experiment_id="999")
    with casstore.start_run(experiment_id=other) as r2:
        pass
    assert r2.info.experiment_id == other


def test_experiment_from_the_environment(tracking: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(fluent.EXPERIMENT_NAME_ENV, "from-env")
    with casstore.start_run() as run:
        pass
    assert casstore.get_experiment(run.info.experiment_id).name == "from-env"


def test_mlflow_setting_its_experiment_after_import_does_not_move_casstores(tracking: str) -> None:
    # a process that uses both: MLflow's set_experiment writes MLFLOW_EXPERIMENT_ID after
    # casstore was imported, and before casstore's tracking API is first used
    code = ("import os, sys, casstore\n"
            "os.environ['MLFLOW_EXPERIMENT_ID'] = '1'\n"
            "casstore.set_tracking_uri(sys.argv[1])\n"
            "with casstore.start_run() as run:\n"
            "    print(run.info.experiment_id)\n")
    out = run_python(code, tracking)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0"  # the Default experiment, not MLflow's '1'


def test_search_runs_filters_orders_and_frames(tracking: str) -> None:
    ids = {}
    for c, acc in (("0.1", 0.8), ("1.0", 0.95), ("10", 0.9)):
        with casstore.start_run(run_name=f"C={c}") as run:
            casstore.log_param("C", c)
            casstore.log_metric("accuracy", acc)
        ids[c] = run.info.run_id
    with casstore.start_run(run_name="no metric"):
        casstore.log_param("C", "x")
    got = casstore.search_runs(filter_string="metrics.accuracy > 0.85", order_by=["metrics.accuracy DESC"], output_format="list")
    assert [r.info.run_id for r in got] == [ids["1.0"], ids["10"]]
    got = casstore.search_runs(order_by=["metrics.accuracy ASC"], max_results=10, output_format="list")
    assert [r.data.params["C"] for r in got] == ["0.1", "10", "1.0", "x"]  # the run without it comes last
    got = casstore.search_runs(filter_string="params.C = '0.1' AND attributes.status = 'FINISHED'", output_format="list")
    assert [r.info.run_id for r in got] == [ids["0.1"]]
    got = casstore.search_runs(filter_string="tags.mlflow.runName LIKE 'C=1%'", output_format="list")
    assert {r.info.run_id for r in got} == {ids["1.0"], ids["10"]}
    assert len(casstore.search_runs(max_results=2)) == 2
    frame = casstore.search_runs(filter_string="metrics.accuracy >= 0.9")  # a DataFrame by default, as MLflow
    assert set(frame["run_id"]) == {ids["1.0"], ids["10"]}
    assert {"metrics.accuracy", "params.C", "tags.mlflow.runName", "digest"} <= set(frame.columns)
    assert list(frame.columns[:6]) == ["run_id", "experiment_id", "status", "artifact_uri", "start_time", "end_time"]
    assert frame.sort_values("metrics.accuracy").iloc[0]["params.C"] == "10"
    empty = casstore.search_runs(filter_string="metrics.accuracy > 5", output_format="pandas")
    assert len(empty) == 0 and "run_id" in empty.columns
    with pytest.raises(InvalidInputError, match="invalid search filter"):
        casstore.search_runs(filter_string="metrics.accuracy >> 1")
    with pytest.raises(InvalidInputError, match="output_format"):
        casstore.search_runs(output_format="csv")
    assert len(casstore.search_runs(experiment_ids=["0"], search_all_experiments=True)) == 4
    # as MLflow: a name with no experiment is skipped (with a warning); ids and names together are refused
    assert casstore.search_runs(experiment_names=["absent"], output_format="list") == []
    assert len(casstore.search_runs(experiment_names=["absent", "Default", None])) == 4
    with pytest.raises(InvalidInputError, match="not both"):
        casstore.search_runs(experiment_ids=["0"], experiment_names=["Default"])


def test_tracking_uri_setting_env_and_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(uri.TRACKING_URI_ENV, raising=False)
    uri._reset_tracking_uri()
    fluent._reset()
    try:
        assert casstore.get_tracking_uri() == "./casstore"
        with casstore.start_run() as run:
            pass
        assert (tmp_path / "casstore" / "runs" / run.info.run_id / "seal").exists()
        monkeypatch.setenv(uri.TRACKING_URI_ENV, str(tmp_path / "from-env"))
        assert casstore.get_tracking_uri() == str(tmp_path / "from-env")
        with casstore.start_run() as run:
            pass
        assert (tmp_path / "from-env" / "runs" / run.info.run_id / "seal").exists()
        casstore.set_tracking_uri(f"file://{tmp_path / 'by-url'}")
        with casstore.start_run() as run:
            pass
        assert (tmp_path / "by-url" / "runs" / run.info.run_id / "seal").exists()
        casstore.set_tracking_uri("memory://tracking-test")
        with casstore.start_run() as run:
            casstore.log_param("p", 1)
        assert casstore.get_run(run.info.run_id).data.params == {"p": "1"}
        casstore.set_tracking_uri(tmp_path / "pathlike")
        assert casstore.get_tracking_uri() == str(tmp_path / "pathlike")
        with pytest.raises(InvalidInputError):
            casstore.set_tracking_uri("")
    finally:
        uri._reset_tracking_uri()
        fluent._reset()


def test_tracking_uri_relative_paths_follow_the_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    fluent._reset()
    try:
        casstore.set_tracking_uri("rel-store")
        monkeypatch.chdir(tmp_path / "a")
        with casstore.start_run():
            pass
        monkeypatch.chdir(tmp_path / "b")
        with casstore.start_run():
            pass
        assert (tmp_path / "a" / "rel-store" / "casstore.json").exists()
        assert (tmp_path / "b" / "rel-store" / "casstore.json").exists()
    finally:
        uri._reset_tracking_uri()
        fluent._reset()


def test_client_mirrors_mlflow_client(tracking: str) -> None:
    c = casstore.MlflowClient()
    assert casstore.Client is casstore.MlflowClient
    exp = c.create_experiment("client-exp")
    run = c.create_run(exp, run_name="via client", tags={"k": "v"})
    rid = run.info.run_id
    assert c.log_param(rid, "p", 3) == 3
    c.log_metric(rid, "m", 1.0, step=1)
    c.log_batch(rid, metrics=[casstore.Metric("m", 2.0, 5, 2)], params=[casstore.Param("q", "x")],
                tags=[casstore.RunTag("t", "y")])
    c.set_tag(rid, "t", "z")
    c.log_text(rid, "hello", "notes/hello.txt")
    c.log_dict(rid, {"a": [1, 2]}, "cfg.json")
    got = c.get_run(rid)
    assert got.data.params == {"p": "3", "q": "x"} and got.data.metrics == {"m": 2.0}
    assert got.data.tags["t"] == "z" and got.info.run_name == "via client"
    assert [m.value for m in c.get_metric_history(rid, "m")] == [1.0, 2.0]
    assert [f.path for f in c.list_artifacts(rid)] == ["cfg.json", "notes"]
    c.set_terminated(rid, "FAILED")
    c.set_terminated(rid)  # already sealed: no-op
    assert c.get_run(rid).info.status == "FAILED"
    with pytest.raises(RunStateError):
        c.log_param(rid, "late", 1)
    assert [r.info.run_id for r in c.search_runs([exp], "params.q = 'x'")] == [rid]
    c.delete_run(rid)
    assert c.search_runs([exp]) == []
    assert [r.info.lifecycle_stage for r in c.search_runs([exp], run_view_type=casstore.ViewType.ALL)] == ["deleted"]
    assert c.get_experiment_by_name("client-exp").experiment_id == exp  # type: ignore[union-attr]
    assert "client-exp" in [e.name for e in c.search_experiments()]


def test_flush_async_logging_publishes_the_ended_runs_summaries_at_once(tracking: str) -> None:
    with casstore.start_run():
        casstore.log_param("p", 1)
    casstore.flush_async_logging()  # what a script calls before it removes the store it used
    assert list((Path(tracking) / "index" / "runs").iterdir())  # not a second later, in the background


def test_set_terminated_keeps_the_end_time_it_is_given(tracking: str) -> None:
    c = casstore.Client()
    run = c.create_run("0", start_time=1_000)
    with pytest.raises(InvalidInputError, match="end_time='soon'"):
        c.set_terminated(run.info.run_id, end_time="soon")  # type: ignore[arg-type]
    c.set_terminated(run.info.run_id, "KILLED", end_time=61_000)
    info = c.get_run(run.info.run_id).info
    assert (info.status, info.start_time, info.end_time) == ("KILLED", 1_000, 61_000)
    assert [r.info.run_id for r in c.search_runs(["0"], "attributes.duration = 60000")] == [run.info.run_id]


def test_client_on_another_store(tracking: str, tmp_path: Path) -> None:
    c = casstore.Client(tmp_path / "elsewhere")
    run = c.create_run("0")
    c.set_terminated(run.info.run_id)
    assert (tmp_path / "elsewhere" / "runs" / run.info.run_id / "seal").exists()
    with pytest.raises(ObjectNotFoundError):
        casstore.get_run(run.info.run_id)  # not in the tracking store


def test_end_run_with_an_unknown_status_is_refused_and_the_run_stays_active(tracking: str) -> None:
    run = casstore.start_run()
    with pytest.raises(InvalidInputError, match="BOGUS"):
        casstore.end_run(status="BOGUS")
    active = casstore.active_run()
    assert active is not None and active.info.run_id == run.info.run_id
    casstore.log_param("still", "open")
    casstore.end_run()
    assert casstore.get_run(run.info.run_id).info.status == "FINISHED"


def test_metrics_linked_to_a_model_keep_one_step_range(tracking: str) -> None:
    """``log_metric(..., model_id=...)`` in a training loop: the run's link tag holds one range
    of steps per metric, whatever the number of steps, and sealing keeps it; a model id the
    store does not hold is refused, saying what a model id is."""
    import json

    import pandas as pd

    class Same(casstore.pyfunc.PythonModel):
        def predict(self, context: object, model_input: pd.DataFrame, params: object = None) -> pd.DataFrame:
            return model_input

    with casstore.start_run() as run:
        info = casstore.pyfunc.log_model(name="m", python_model=Same(), pip_requirements=["pandas"])
        for step in range(200):
            casstore.log_metric("loss", 1.0 / (step + 1), step=step, model_id=info.model_id)
        casstore.log_metric("loss", 0.001, step=500, model_id=info.model_id)
        with pytest.raises(InvalidInputError, match="model_id"):
            casstore.log_metric("loss", 0.1, model_id="m-0123")
        with pytest.raises(ObjectNotFoundError):
            casstore.log_metric("loss", 0.1, model_id="f" * 64)
    tags = casstore.get_run(run.info.run_id).data.tags
    assert json.loads(tags[f"casstore.model_metrics.{info.model_id}"]) == {"loss": [[0, 199], [500, 500]]}
    steps = sorted(m.step for m in casstore.get_logged_model(info.model_id).metrics)
    assert steps == [*range(200), 500]
