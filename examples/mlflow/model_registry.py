"""The model registry tutorial's steps, in the shape of MLflow's documentation: train, log
and register a model, describe and tag its version, point an alias at it, load by alias.
(cloudpickle is named because MLflow 3's default, skops, refuses a forest's tree type.)

Only the imports differ from the MLflow script (`import casstore as mlflow`).
"""

from sklearn.datasets import load_diabetes
from sklearn.ensemble import RandomForestRegressor
from sklearn.metrics import mean_squared_error
from sklearn.model_selection import train_test_split

import casstore as mlflow
from casstore import MlflowClient
from casstore.models import infer_signature

if __name__ == "__main__":
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=42)
    params = {"n_estimators": 20, "max_depth": 4, "random_state": 42}

    mlflow.set_experiment("registry-tutorial")
    with mlflow.start_run() as run:
        model = RandomForestRegressor(**params).fit(X_train, y_train)
        mse = mean_squared_error(y_test, model.predict(X_test))
        mlflow.log_params(params)
        mlflow.log_metric("mse", mse)
        info = mlflow.sklearn.log_model(
            model, name="rf", signature=infer_signature(X_train, model.predict(X_train)),
            registered_model_name="diabetes-rf", serialization_format="cloudpickle",
        )
    print(f"registered version {info.registered_model_version} of diabetes-rf, mse {mse:.2f}")

    client = MlflowClient()
    client.update_registered_model("diabetes-rf", description="Random forest on the diabetes data")
    client.update_model_version("diabetes-rf", 1, description="first candidate")
    client.set_model_version_tag("diabetes-rf", "1", "validation_status", "approved")
    client.set_registered_model_alias("diabetes-rf", "champion", 1)

    champion = client.get_model_version_by_alias("diabetes-rf", "champion")
    print("champion:", champion.version, champion.tags["validation_status"], champion.description)
    loaded = mlflow.pyfunc.load_model("models:/diabetes-rf@champion")
    same = (loaded.predict(X_test) == model.predict(X_test)).all()
    print("loaded by alias predicts the same:", bool(same))
    for mv in client.search_model_versions("name = 'diabetes-rf'"):
        print("version", mv.version, "from run", mv.run_id == run.info.run_id)
