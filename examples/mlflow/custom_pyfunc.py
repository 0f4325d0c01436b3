"""A custom python model, in the shape of MLflow's "custom pyfunc" documentation example:
a model that adds n to its input, saved to a directory, logged, and loaded back.

Only the imports differ from the MLflow script (`import casstore as mlflow`).
"""

import os
import tempfile

import pandas as pd

import casstore as mlflow
from casstore.pyfunc import PythonModel


class AddN(PythonModel):
    """Adds n to every column of its input."""

    def __init__(self, n):
        self.n = n

    def load_context(self, context):
        with open(context.artifacts["offsets"]) as f:
            self.offset = float(f.read())

    def predict(self, context, model_input, params=None):
        return model_input.apply(lambda column: column + self.n + self.offset)


if __name__ == "__main__":
    workdir = tempfile.mkdtemp()
    offsets = os.path.join(workdir, "offsets.txt")
    with open(offsets, "w") as f:
        f.write("0.5")

    model_path = os.path.join(workdir, "add_n_model")
    mlflow.pyfunc.save_model(path=model_path, python_model=AddN(n=5), artifacts={"offsets": offsets})
    loaded = mlflow.pyfunc.load_model(model_path)
    print("from the directory:", loaded.predict(pd.DataFrame([range(5)])).values.tolist())

    with mlflow.start_run() as run:
        info = mlflow.pyfunc.log_model(name="add_n", python_model=AddN(n=2), artifacts={"offsets": offsets},
                                       input_example=pd.DataFrame({"x": [1.0, 2.0]}))
    logged = mlflow.pyfunc.load_model(info.model_uri)
    print("from the run:", logged.predict(pd.DataFrame({"x": [10.0, 20.0]}))["x"].tolist())
    print(f"model uri: {info.model_uri}")
