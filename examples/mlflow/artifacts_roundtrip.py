"""Artifacts written and read back, in the shape of MLflow's tracking documentation: a
figure, an image, a config as JSON and YAML, a text report and a directory tree; then
listed, downloaded (each into the destination under its last name, as MLflow does) and
loaded with `mlflow.artifacts`.

Only the imports differ from the MLflow script (`import casstore as mlflow`). Like
MLflow's, it draws its figure with matplotlib: `pip install matplotlib` first.
"""

import os
import tempfile

import matplotlib
import numpy as np

import casstore as mlflow
from casstore import MlflowClient

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

if __name__ == "__main__":
    mlflow.set_experiment("artifacts-roundtrip")
    config = {"model": {"layers": [64, 32], "dropout": 0.2}, "optimizer": "adam", "epochs": 10}
    work = tempfile.mkdtemp()
    for rel, text in {"report/summary.txt": "all good\n", "report/plots/notes.txt": "see loss.png\n"}.items():
        os.makedirs(os.path.dirname(os.path.join(work, rel)), exist_ok=True)
        with open(os.path.join(work, rel), "w") as f:
            f.write(text)

    with mlflow.start_run(run_name="artifacts") as run:
        fig, ax = plt.subplots()
        ax.plot([0, 1, 2, 3], [1.0, 0.6, 0.4, 0.3])
        ax.set_title("loss")
        mlflow.log_figure(fig, "figures/loss.png")
        plt.close(fig)
        image = np.zeros((20, 30, 3), dtype=np.uint8)
        image[:, :15] = [255, 0, 0]
        mlflow.log_image(image, "images/red_half.png")
        mlflow.log_dict(config, "config.json")
        mlflow.log_dict(config, "config.yaml")
        mlflow.log_text("epoch,loss\n0,1.0\n1,0.6\n", "logs/history.csv")
        mlflow.log_artifacts(os.path.join(work, "report"), artifact_path="report")

    client = MlflowClient()
    run_id = run.info.run_id

    def walk(path=None, depth=0):
        for f in client.list_artifacts(run_id, path):
            print("  " * depth + os.path.basename(f.path) + ("/" if f.is_dir else ""))
            if f.is_dir:
                walk(f.path, depth + 1)

    walk()
    print("config.json:", mlflow.artifacts.load_dict(f"runs:/{run_id}/config.json") == config)
    image = mlflow.artifacts.load_image(f"runs:/{run_id}/images/red_half.png")
    print("image:", image.size, image.getpixel((0, 0)), image.getpixel((29, 0)))
    print("history:", mlflow.artifacts.load_text(f"runs:/{run_id}/logs/history.csv").splitlines())

    dst = tempfile.mkdtemp()
    yaml_file = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="config.yaml", dst_path=dst)
    with open(yaml_file) as f:
        print("config.yaml starts with:", f.readline().strip())
    plots = mlflow.artifacts.download_artifacts(artifact_uri=f"runs:/{run_id}/report/plots", dst_path=dst)
    print("downloaded:", sorted(os.listdir(dst)), sorted(os.listdir(plots)))
