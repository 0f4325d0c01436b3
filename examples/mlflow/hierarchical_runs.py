"""Hierarchical runs: a parent run of a small hyperparameter sweep with one nested run per
setting, in the shape of MLflow's hyperparameter-tuning documentation.

Only the imports differ from the MLflow script (`import casstore as mlflow`).
"""

from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import casstore as mlflow

if __name__ == "__main__":
    X, y = load_breast_cancer(return_X_y=True)
    mlflow.set_experiment("hierarchical-runs")
    with mlflow.start_run(run_name="sweep") as parent:
        mlflow.log_param("model", "logistic regression")
        best_c, best_score = None, -1.0
        for c in (0.01, 0.1, 1.0):
            with mlflow.start_run(run_name=f"C={c}", nested=True):
                pipe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=500))
                score = cross_val_score(pipe, X, y, cv=3).mean()
                mlflow.log_param("C", c)
                mlflow.log_metric("cv_accuracy", score)
            if score > best_score:
                best_c, best_score = c, score
        mlflow.log_metric("best_cv_accuracy", best_score)
        mlflow.log_param("best_C", best_c)

    children = mlflow.search_runs(filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
                                  order_by=["metrics.cv_accuracy DESC"])
    print(children[["params.C", "metrics.cv_accuracy"]].to_string(index=False))
    print(f"best C: {best_c}")
