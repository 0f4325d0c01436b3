"""An MLflow import that stopped part way (the tracking server went away while the metric
history was read) is completed by importing again: every point once, every param, and the
run's own end time."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import pytest

import casstore
import casstore.migrate as migrate

_FAILING_IMPORT = textwrap.dedent("""
    import sys
    import mlflow
    import casstore.migrate as migrate

    real = mlflow.MlflowClient.get_metric_history
    def flaky(self, run_id, key):  # the server goes away at the second metric's history
        if key == "loss":
            raise ConnectionError("tracking server unreachable")
        return real(self, run_id, key)
    mlflow.MlflowClient.get_metric_history = flaky
    try:
        migrate.import_mlflow_run(sys.argv[1], mlflow_tracking_uri=sys.argv[2], tracking_uri=sys.argv[3])
    except ConnectionError:
        sys.exit(3)
""")


@pytest.mark.filterwarnings("ignore")  # MLflow's own deprecation and future warnings
def test_an_import_that_stopped_part_way_is_completed_by_importing_again(tmp_path: os.PathLike[str]) -> None:
    import mlflow

    uri = "sqlite:///" + os.path.join(tmp_path, "mlflow.db")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        mlflow.set_experiment("legacy")
        with mlflow.start_run(run_name="baseline") as r:
            mlflow.log_params({"C": 1.0, "depth": 4})
            for step in range(3):
                mlflow.log_metric("acc", [0.5, float("nan"), 0.7][step], step=step)
                mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
            mlflow.log_metric("loss", 0.25, step=2)  # the same step twice: both points are kept
    finally:
        mlflow.set_tracking_uri(previous)
    mlflow_run = mlflow.MlflowClient(tracking_uri=uri).get_run(r.info.run_id)
    store = os.path.join(tmp_path, "store")

    failed = subprocess.run([sys.executable, "-c", _FAILING_IMPORT, r.info.run_id, uri, store], capture_output=True,
                            text=True)
    assert failed.returncode == 3, failed.stderr[-2000:]

    got = migrate.import_mlflow_run(r.info.run_id, mlflow_tracking_uri=uri, tracking_uri=store)
    assert not got.already_imported and got.digest
    client = casstore.Client(store)
    run = client.get_run(got.run_id)
    assert run.data.params == {"C": "1.0", "depth": "4"}
    acc = [(m.step, m.value) for m in client.get_metric_history(got.run_id, "acc")]
    assert [s for s, _ in acc] == [0, 1, 2] and acc[0][1] == 0.5 and math.isnan(acc[1][1]) and acc[2][1] == 0.7
    loss = sorted((m.step, m.value) for m in client.get_metric_history(got.run_id, "loss"))
    assert loss == [(0, 1.0), (1, 0.5), (2, 0.25), (2, 1.0 / 3)]
    assert (run.info.status, run.info.end_time) == ("FINISHED", mlflow_run.info.end_time)
