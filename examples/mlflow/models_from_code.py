"""MLflow 3's models from code, in its shape: the model is a Python file that ends with
`mlflow.models.set_model(...)`, logged from that file (no pickle) with params of the logged
model and a metric linked to it, then scored with `mlflow.models.predict` in the current
environment, as the model server would answer, from data and from a request file with params.

Only the imports differ from the MLflow script (`import casstore as mlflow`).
"""

import json
import os
import tempfile

import pandas as pd

import casstore as mlflow

MODEL_CODE = '''
import casstore as mlflow
from casstore.pyfunc import PythonModel


class Scaler(PythonModel):
    # multiplies its input by the inference param k (1 unless a request gives it)

    def predict(self, context, model_input, params=None):
        return model_input * (params or {}).get("k", 1.0)


mlflow.models.set_model(Scaler())
'''

if __name__ == "__main__":
    workdir = tempfile.mkdtemp()
    code_path = os.path.join(workdir, "scaler.py")
    with open(code_path, "w") as f:
        f.write(MODEL_CODE)
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    signature = mlflow.models.infer_signature(frame, frame, params={"k": 1.0})

    mlflow.set_experiment("models from code")
    with mlflow.start_run():
        model_info = mlflow.pyfunc.log_model(
            name="scaler", python_model=code_path, signature=signature, params={"family": "linear"},
            pip_requirements=["pandas"],
        )
        mlflow.log_metric("mae", 0.0, model_id=model_info.model_id)

    logged = mlflow.get_logged_model(model_info.model_id)
    print("logged model:", logged.name, logged.params, sorted(m.key for m in logged.metrics))
    print("the last one logged:", mlflow.last_logged_model().model_id == model_info.model_id)

    model = mlflow.pyfunc.load_model(model_info.model_uri)
    print(model.predict(frame, params={"k": 2.0}).to_string())

    out = os.path.join(workdir, "predictions.json")
    mlflow.models.predict(model_info.model_uri, input_data=frame, env_manager="local", output_path=out)
    with open(out) as f:
        print("from data:", json.load(f))
    request = os.path.join(workdir, "request.json")
    with open(request, "w") as f:
        json.dump({"dataframe_split": {"columns": ["x"], "data": [[4.0]]}, "params": {"k": 10}}, f)
    mlflow.models.predict(model_info.model_uri, input_path=request, env_manager="local", output_path=out)
    with open(out) as f:
        print("from a request with params:", json.load(f))
