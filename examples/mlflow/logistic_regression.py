"""A tiny logistic regression, in the shape of MLflow's sklearn_logistic_regression example.

Only the imports differ from the MLflow script (`import casstore as mlflow`).
"""

import numpy as np
from sklearn.linear_model import LogisticRegression

import casstore as mlflow

if __name__ == "__main__":
    X = np.array([-2, -1, 0, 1, 2, 1]).reshape(-1, 1)
    y = np.array([0, 0, 1, 1, 1, 0])
    lr = LogisticRegression()
    lr.fit(X, y)
    score = lr.score(X, y)
    print(f"Score: {score}")
    mlflow.log_metric("score", score)
    predictions = lr.predict(X)
    signature = mlflow.models.infer_signature(X, predictions)
    mlflow.sklearn.log_model(lr, name="model", signature=signature)
    print(f"Model saved in run {mlflow.active_run().info.run_id}")
