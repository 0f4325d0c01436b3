"""MLflow 3's tracking quickstart, in its shape: train an iris classifier, log params and a
metric, tag the run, log and register the model with its signature, load it back and predict.

Only the imports differ from the MLflow script (`import casstore as mlflow`).
"""

import pandas as pd
from sklearn import datasets
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split

import casstore as mlflow
from casstore.models import infer_signature

if __name__ == "__main__":
    X, y = datasets.load_iris(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=42)
    params = {"solver": "lbfgs", "max_iter": 1000, "multi_class": "auto", "random_state": 8888}
    lr = LogisticRegression(**{k: v for k, v in params.items() if k != "multi_class"})
    lr.fit(X_train, y_train)
    accuracy = accuracy_score(y_test, lr.predict(X_test))

    mlflow.set_experiment("MLflow Quickstart")
    with mlflow.start_run():
        mlflow.log_params(params)
        mlflow.log_metric("accuracy", accuracy)
        mlflow.set_tag("Training Info", "Basic LR model for iris data")
        signature = infer_signature(X_train, lr.predict(X_train))
        model_info = mlflow.sklearn.log_model(
            sk_model=lr, name="iris_model", signature=signature, input_example=X_train,
            registered_model_name="tracking-quickstart",
        )

    loaded_model = mlflow.pyfunc.load_model(model_info.model_uri)
    predictions = loaded_model.predict(X_test)
    result = pd.DataFrame(X_test, columns=datasets.load_iris().feature_names)
    result["actual_class"] = y_test
    result["predicted_class"] = predictions
    print(result[:4].to_string())
    print(f"accuracy: {accuracy}")
    print(f"registered version: {model_info.registered_model_version}")
