"""MLflow's model evaluation example, in its shape: train a binary classifier, log it, and
evaluate it on held-out rows with ``mlflow.evaluate``, which logs the default evaluator's
metrics to the run; then evaluate a static set of predictions, with no model at all.

Only the imports differ from the MLflow script (`import casstore as mlflow`).
"""

from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split

import casstore as mlflow

if __name__ == "__main__":
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.33, random_state=42)
    model = RandomForestClassifier(n_estimators=50, random_state=42).fit(X_train, y_train)
    eval_data = X_test.copy()
    eval_data["label"] = y_test

    mlflow.set_experiment("evaluation")
    with mlflow.start_run() as run:
        model_info = mlflow.sklearn.log_model(model, name="model", serialization_format="cloudpickle")
        result = mlflow.evaluate(model_info.model_uri, eval_data, targets="label", model_type="classifier",
                                 evaluators=["default"])
    for name in ("accuracy_score", "f1_score", "roc_auc", "true_positives", "false_negatives"):
        print(f"{name}: {result.metrics[name]:.4f}")
    logged = mlflow.get_run(run.info.run_id).data.metrics
    print(f"logged to the run: {sorted(logged) == sorted(result.metrics)}")

    eval_data["predictions"] = model.predict(X_test)
    with mlflow.start_run():
        static = mlflow.evaluate(data=eval_data, targets="label", predictions="predictions", model_type="classifier")
    print(f"static predictions, accuracy: {static.metrics['accuracy_score']:.4f}")
