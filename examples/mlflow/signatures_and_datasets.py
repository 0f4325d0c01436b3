"""Signatures, input examples with params and dataset sources, in the shape of MLflow's
documentation on model signatures and on `mlflow.data`: the column types as
`mlflow.types.DataType` members, a custom model logged with an input example that carries
its inference params (`input_example=(data, params)`), and datasets read from S3 and from a
local file, recorded as inputs of the run and traced back with `get_source`.

Only the imports differ from the MLflow script (`import casstore as mlflow`).
"""

import os
import tempfile

import pandas as pd

import casstore as mlflow
from casstore.pyfunc import PythonModel
from casstore.types import DataType


class Threshold(PythonModel):
    """Flags the rows whose score passes a threshold given at inference time."""

    def predict(self, context, model_input, params=None):
        threshold = (params or {}).get("threshold", 0.5)
        return (model_input["score"] >= threshold).astype(int)


if __name__ == "__main__":
    mlflow.set_experiment("signatures-and-datasets")
    frame = pd.DataFrame({"user": [1, 2, 3], "score": [0.2, 0.6, 0.9], "segment": ["a", "b", "a"]})

    signature = mlflow.models.infer_signature(frame, params={"threshold": 0.5})
    types = signature.inputs.input_types()
    print("column types:", types, "numpy:", [str(t.to_numpy()) for t in types])
    print("numeric columns:", [s.name for s in signature.inputs.inputs if s.type in (DataType.long, DataType.double)])
    print("every type:", [t.name for t in DataType])

    with mlflow.start_run() as run:
        info = mlflow.pyfunc.log_model(name="threshold", python_model=Threshold(), pip_requirements=["pandas"],
                                       input_example=(frame.head(2), {"threshold": 0.5}))
        remote = mlflow.data.from_pandas(frame, source="s3://ml-data/scores/2024-05.csv", name="scores")
        local_file = os.path.join(tempfile.mkdtemp(), "holdout.csv")
        frame.to_csv(local_file, index=False)
        holdout = mlflow.data.from_pandas(pd.read_csv(local_file), source=local_file, name="holdout")
        mlflow.log_input(remote, context="training")
        mlflow.log_input(holdout, context="evaluation")

    model = mlflow.pyfunc.load_model(info.model_uri)
    print("params the model takes:", model.metadata.get_params_schema().to_dict())
    print("with the example's threshold:", model.predict(frame).tolist())
    print("with threshold 0.8:", model.predict(frame, params={"threshold": 0.8}).tolist())
    described = mlflow.models.Model.load(info.model_uri)
    print("example params:", described.load_input_example_params(mlflow.artifacts.download_artifacts(info.model_uri)))

    for dataset_input in sorted(mlflow.get_run(run.info.run_id).inputs.dataset_inputs, key=lambda d: d.dataset.name):
        source = mlflow.data.get_source(dataset_input)
        print(dataset_input.dataset.name, dataset_input.dataset.source_type, type(source).__name__,
              source.uri == (remote.source.uri if dataset_input.dataset.name == "scores" else local_file))
    copied = holdout.source.load(dst_path=tempfile.mkdtemp())
    print("the holdout file loads back:", pd.read_csv(copied).equals(frame))
