"""casstore in a minute: track a run as with MLflow, then check what was stored.

Run it from this directory: ``python quickstart.py``. The store is ./casstore.
"""

import os
import shutil
import tempfile

import casstore as mlflow  # the only line that changes in an MLflow script

workdir = tempfile.mkdtemp()
weights = os.path.join(workdir, "weights.bin")
with open(weights, "wb") as f:
    f.write(os.urandom(1 << 20))

mlflow.set_experiment("quickstart")
with mlflow.start_run(run_name="demo") as run:
    mlflow.log_param("lr", 0.01)
    for step in range(5):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    mlflow.log_artifact(weights)  # chunked, deduplicated, bound once
    mlflow.log_dict({"layers": [64, 32], "activation": "relu"}, "config.yaml")

finished = mlflow.get_run(run.info.run_id)
print(f"run {finished.info.run_id} {finished.info.status}")
print(f"run digest (pins everything the run holds): {finished.info.digest}")
print(f"params {finished.data.params}, latest metrics {finished.data.metrics}")
for entry in mlflow.list_artifacts(run.info.run_id):
    print(f"  {entry.path:<14} {entry.file_size:>9} bytes  blake3 {entry.digest}")

# read back, verified against the digests
config = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/config.yaml")
local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="weights.bin", dst_path=workdir + "/out")
print(f"config {config}; weights downloaded to {local}")

# logging the same content again in a new run stores nothing new
with mlflow.start_run(run_name="demo again"):
    mlflow.log_artifact(weights)
print("best run by loss:", mlflow.search_runs(filter_string="metrics.loss < 0.5", order_by=["metrics.loss ASC"]).iloc[0]["run_id"])
shutil.rmtree(workdir)
