"""Analysing runs with `search_runs`, in the shape of MLflow's search documentation: filter
strings over params, metrics, tags and attributes, ordering, `max_results`, a DataFrame to
summarise with pandas, and `output_format="list"` for `Run` objects.

Only the imports differ from the MLflow script (`import casstore as mlflow`).
"""

from sklearn.datasets import load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import casstore as mlflow

if __name__ == "__main__":
    X, y = load_wine(return_X_y=True)
    mlflow.set_experiment("search-runs-analysis")
    candidates = [("logreg", {"C": 0.1}), ("logreg", {"C": 1.0}),
                  ("forest", {"max_depth": 2}), ("forest", {"max_depth": 5})]
    for family, params in candidates:
        name = family + "-" + "-".join(f"{k}{v}" for k, v in params.items())
        with mlflow.start_run(run_name=name):
            if family == "logreg":
                model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, **params))
            else:
                model = RandomForestClassifier(n_estimators=20, random_state=0, **params)
            mlflow.log_params(params)
            mlflow.log_metric("cv_accuracy", cross_val_score(model, X, y, cv=3).mean())
            mlflow.set_tags({"family": family, "dataset": "wine"})

    runs = mlflow.search_runs(experiment_names=["search-runs-analysis"],
                              order_by=["metrics.cv_accuracy DESC", "attributes.run_name ASC"])
    print(runs[["tags.mlflow.runName", "tags.family", "metrics.cv_accuracy"]].round(3).to_string(index=False))
    print(runs.groupby("tags.family")["metrics.cv_accuracy"].max().round(3).to_string())

    forests = mlflow.search_runs(filter_string="tags.family = 'forest' AND params.max_depth != '2'")
    print("deeper forests:", forests["tags.mlflow.runName"].tolist())
    strong = mlflow.search_runs(filter_string="metrics.cv_accuracy > 0.95 AND attributes.status = 'FINISHED'",
                                order_by=["attributes.run_name ASC"])
    print("strong:", strong["tags.mlflow.runName"].tolist())
    logreg = mlflow.search_runs(filter_string="attributes.run_name LIKE 'logreg-%'", output_format="list")
    print("logistic regressions:", sorted(r.data.params["C"] for r in logreg))
    [best] = mlflow.search_runs(order_by=["metrics.cv_accuracy DESC", "attributes.run_name ASC"], max_results=1,
                                output_format="list")
    print("best:", best.info.run_name, round(best.data.metrics["cv_accuracy"], 3))
