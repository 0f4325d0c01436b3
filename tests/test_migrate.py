"""Moving MLflow data into casstore: an artifact directory (no MLflow needed) and, where
MLflow is installed, whole runs read through MLflow's own client."""

from __future__ import annotations

import os
import textwrap

import numpy as np
import pytest
from blake3 import blake3

import casstore
import casstore.migrate as migrate
from casstore.exceptions import LocalFileError, RunStateError

MLMODEL = """\
artifact_path: model
flavors:
  python_function:
    env:
      conda: conda.yaml
      virtualenv: python_env.yaml
    loader_module: mlflow.sklearn
    model_path: model.skops
    predict_fn: predict
    python_version: 3.11.7
  sklearn:
    code: null
    pickled_model: model.skops
    serialization_format: skops
    sklearn_version: 1.9.1
    skops_trusted_types: null
mlflow_version: 3.17.2
model_size_bytes: 9485
run_id: a098409039814d42a0dbbf565735d89d
signature:
  inputs: '[{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 3]}}]'
  outputs: '[{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]'
  params: null
utc_time_created: '2026-11-23 11:48:27.291450'
"""


def _fit() -> tuple[object, np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.random((40, 3))
    return LogisticRegression().fit(X, (X[:, 0] > 0.5).astype(int)), X


def _mlflow_artifact_dir(root: str, model: object) -> str:
    """An artifact directory as MLflow 3 writes one: files, and a model directory with
    MLmodel, requirements and a skops file."""
    import skops.io

    os.makedirs(os.path.join(root, "model"))
    os.makedirs(os.path.join(root, "plots"))
    with open(os.path.join(root, "plots", "loss.csv"), "w") as f:
        f.write("step,loss\n1,0.5\n2,0.4\n")
    with open(os.path.join(root, "weights.bin"), "wb") as f:
        f.write(os.urandom(300_000))
    skops.io.dump(model, os.path.join(root, "model", "model.skops"))
    with open(os.path.join(root, "model", "MLmodel"), "w") as f:
        f.write(MLMODEL)
    with open(os.path.join(root, "model", "requirements.txt"), "w") as f:
        f.write("mlflow==3.17.2\nscikit-learn==1.9.1\nskops==0.16.0\n")
    return root


def _b3(path: str) -> str:
    with open(path, "rb") as f:
        return blake3(f.read()).hexdigest()


def test_artifact_dir_is_imported_byte_for_byte_with_its_sklearn_model(tmp_path: os.PathLike[str]) -> None:
    model, X = _fit()
    src = _mlflow_artifact_dir(os.path.join(tmp_path, "artifacts"), model)
    store = os.path.join(tmp_path, "store")
    run = migrate.import_artifact_dir(src, experiment="migrated", params={"lr": 0.1}, tracking_uri=store)
    assert run.models == ("model",) and run.digest is not None and not run.already_imported

    client = casstore.Client(store)
    got = client.get_run(run.run_id)
    assert got.info.status == "FINISHED" and got.info.digest == run.digest
    assert got.data.params == {"lr": "0.1"}
    assert got.data.tags[migrate.SOURCE_TAG] == f"dir:{os.path.abspath(src)}"
    view = client.store.get_run(run.run_id)
    expected = {}
    for dirpath, _, files in os.walk(src):
        for fn in files:
            full = os.path.join(dirpath, fn)
            expected[os.path.relpath(full, src).replace(os.sep, "/")] = _b3(full)
    assert {p: a.digest for p, a in view.artifacts.items()} == expected  # what b3sum prints, file for file

    loaded = casstore.sklearn.load_model(f"runs:/{run.run_id}/model", store=client.store)
    assert (loaded.predict(X) == model.predict(X)).all()
    entry = client.store.load_model_entry(view.models["model"].digest)
    assert entry["flavors"]["python_function"]["loader_module"] == "casstore.sklearn"
    assert entry["requirements"] == ["mlflow==3.17.2", "scikit-learn==1.9.1", "skops==0.16.0"]
    # each file's recipe is pinned, as log_model pins it (a file of one chunk has none to pin)
    assert entry["files"].keys() == {p[len("model/"):] for p in expected if p.startswith("model/")}
    assert all(f.get("recipe") == client.store.objects.recipe_pin(f["digest"], os.path.join(src, "model", *p.split("/")))
               for p, f in entry["files"].items())


def test_a_model_of_another_flavor_stays_plain_artifacts(tmp_path: os.PathLike[str]) -> None:
    src = os.path.join(tmp_path, "artifacts", "net")
    os.makedirs(src)
    with open(os.path.join(src, "MLmodel"), "w") as f:
        f.write(textwrap.dedent("""\
            flavors:
              pytorch: {model_data: data, pytorch_version: 2.4.0}
            """))
    with open(os.path.join(src, "data"), "wb") as f:
        f.write(b"\0" * 100)
    run = migrate.import_artifact_dir(os.path.dirname(src), tracking_uri=os.path.join(tmp_path, "store"))
    assert run.models == () and run.artifacts == 2


def test_missing_directory_is_a_clear_error(tmp_path: os.PathLike[str]) -> None:
    with pytest.raises(LocalFileError, match="not a directory"):
        migrate.import_artifact_dir(os.path.join(tmp_path, "nope"), tracking_uri=os.path.join(tmp_path, "store"))
    assert not os.path.exists(os.path.join(tmp_path, "store", "runs"))


# MLflow is in the test extra: the tests below run wherever the tests do, CI included


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")  # MLflow's own deprecation and future warnings
def test_mlflow_runs_are_copied_whole_and_importing_again_is_a_no_op(tmp_path: os.PathLike[str]) -> None:
    import mlflow

    model, X = _fit()
    uri = "sqlite:///" + os.path.join(tmp_path, "mlflow.db")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        mlflow.set_experiment("legacy")
        note = os.path.join(tmp_path, "note.txt")
        with open(note, "w") as f:
            f.write("trained on split A\n")
        with mlflow.start_run(run_name="baseline") as r:
            mlflow.log_param("C", 1.0)
            for step, loss in enumerate([0.9, 0.5, 0.3]):
                mlflow.log_metric("loss", loss, step=step)
            mlflow.set_tag("team", "fraud")
            mlflow.log_artifact(note, "notes")
            mlflow.sklearn.log_model(model, name="model")
        with mlflow.start_run(run_name="still going") as open_run:
            with pytest.raises(RunStateError, match="RUNNING"):
                migrate.import_mlflow_run(open_run.info.run_id, mlflow_tracking_uri=uri,
                                          tracking_uri=os.path.join(tmp_path, "store"))
    finally:
        mlflow.end_run()
        mlflow.set_tracking_uri(previous)

    store = os.path.join(tmp_path, "store")
    [first, *rest] = migrate.import_mlflow_experiment("legacy", mlflow_tracking_uri=uri, tracking_uri=store)
    assert first.source == f"mlflow:{r.info.run_id}" and first.models == ("model",)
    assert [x.already_imported for x in rest] == [False]  # the run ended above is imported too
    again = migrate.import_mlflow_run(r.info.run_id, mlflow_tracking_uri=uri, tracking_uri=store)
    assert again.already_imported and again.run_id == first.run_id and again.digest == first.digest

    client = casstore.Client(store)
    got = client.get_run(first.run_id)
    assert got.info.run_name == "baseline" and got.info.start_time == r.info.start_time
    assert got.data.params == {"C": "1.0"} and got.data.tags["team"] == "fraud"
    assert [(m.step, m.value) for m in client.get_metric_history(first.run_id, "loss")] == [(0, 0.9), (1, 0.5), (2, 0.3)]
    assert got.info.experiment_id == client.get_experiment_by_name("legacy").experiment_id
    paths = {a.path for a in client.store.get_run(first.run_id).artifacts.values()}
    assert "notes/note.txt" in paths and "model/MLmodel" in paths
    loaded = casstore.sklearn.load_model(f"runs:/{first.run_id}/model", store=client.store)
    assert (loaded.predict(X) == model.predict(X)).all()


def test_import_mlflow_command_imports_a_directory(tmp_path: os.PathLike[str]) -> None:
    import json
    import subprocess
    import sys

    model, _ = _fit()
    src = _mlflow_artifact_dir(os.path.join(tmp_path, "artifacts"), model)
    store = os.path.join(tmp_path, "store")
    cmd = [sys.executable, "-m", "casstore.cli", "--store", store, "import-mlflow", "--dir", src, "--into", "legacy", "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    [run] = json.loads(out.stdout)
    assert run["models"] == ["model"] and run["artifacts"] == 5
    assert casstore.Client(store).get_run(run["run_id"]).info.digest == run["digest"]
    bad = subprocess.run([sys.executable, "-m", "casstore.cli", "--store", store, "import-mlflow"], capture_output=True, text=True)
    assert bad.returncode == 2 and "exactly one" in bad.stderr


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")  # MLflow's own deprecation and future warnings
def test_an_imported_child_run_names_its_new_parent(tmp_path: os.PathLike[str]) -> None:
    import json

    import mlflow
    from click.testing import CliRunner

    from casstore.cli import cli

    uri = "sqlite:///" + os.path.join(tmp_path, "mlflow.db")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        mlflow.set_experiment("sweep")
        with mlflow.start_run(run_name="parent") as parent:
            with mlflow.start_run(run_name="child", nested=True) as child:
                mlflow.log_param("lr", 0.1)
    finally:
        mlflow.set_tracking_uri(previous)
    store = os.path.join(tmp_path, "store")

    def imported(*args: str) -> list[dict[str, object]]:
        r = CliRunner().invoke(cli, ["--store", store, "import-mlflow", *args, "--mlflow-uri", uri, "--json"])
        assert r.exit_code == 0, (r.stdout, r.stderr)
        return json.loads(r.stdout)  # type: ignore[no-any-return]

    [got_child] = imported(child.info.run_id)  # the child alone: its parent comes along
    client = casstore.Client(store)
    new_child = client.get_run(str(got_child["run_id"]))
    new_parent = client.get_run(new_child.data.tags["mlflow.parentRunId"])
    assert new_parent.data.tags["casstore.import.source"] == f"mlflow:{parent.info.run_id}"
    assert new_parent.info.run_name == "parent" and new_parent.info.run_id != parent.info.run_id
    both = {str(r["source"]): r for r in imported("--experiment", "sweep")}  # again, the whole experiment
    assert all(r["already_imported"] for r in both.values())
    assert both[f"mlflow:{parent.info.run_id}"]["run_id"] == new_parent.info.run_id
