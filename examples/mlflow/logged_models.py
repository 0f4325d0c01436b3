"""MLflow 3's model-centric tracking, in the shape of its "logged models" documentation: a
checkpoint logged per epoch (`log_model(step=...)`), validation metrics logged for a model
(`log_metric(..., model_id=...)`), a second run scoring a model it did not log, and the
models found again by their metrics (`search_logged_models`), the runs' `outputs` and
`inputs` saying which models each made and used.

Only the imports differ from the MLflow script (`import casstore as mlflow`).
"""

import numpy as np
from sklearn.linear_model import SGDRegressor

import casstore as mlflow

if __name__ == "__main__":
    mlflow.set_experiment("logged-models")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = X @ np.array([1.5, -2.0, 0.5]) + rng.normal(scale=0.1, size=200)
    X_train, y_train, X_val, y_val = X[:150], y[:150], X[150:], y[150:]

    model = SGDRegressor(random_state=0, learning_rate="constant", eta0=0.01)
    with mlflow.start_run(run_name="training") as training:
        checkpoints = []
        for epoch in range(3):
            model.partial_fit(X_train, y_train)
            info = mlflow.sklearn.log_model(model, name=f"checkpoint-{epoch}", step=epoch,
                                            pip_requirements=["scikit-learn"], serialization_format="cloudpickle")
            val_mse = float(np.mean((model.predict(X_val) - y_val) ** 2))
            mlflow.log_metric("val_mse", round(val_mse, 4), step=epoch, model_id=info.model_id)
            checkpoints.append(info.model_id)

    outputs = mlflow.get_run(training.info.run_id).outputs.model_outputs
    print("checkpoints logged at steps:", sorted(o.step for o in outputs))
    print("the same models:", sorted(o.model_id for o in outputs) == sorted(checkpoints))

    best = mlflow.search_logged_models(filter_string="metrics.val_mse < 1", output_format="list",
                                       order_by=[{"field_name": "metrics.val_mse", "ascending": True}])
    print("checkpoints with val_mse < 1, best first:", [m.name for m in best])

    with mlflow.start_run(run_name="holdout") as holdout:
        chosen = mlflow.sklearn.load_model(f"models:/{best[0].model_id}")
        mlflow.log_metric("holdout_mse", round(float(np.mean((chosen.predict(X_val) - y_val) ** 2)), 4),
                          model_id=best[0].model_id)
    used = mlflow.get_run(holdout.info.run_id).inputs.model_inputs
    print("the holdout run used the best checkpoint:", [m.model_id for m in used] == [best[0].model_id])
    metrics = mlflow.get_logged_model(best[0].model_id).metrics
    print("the best checkpoint's metrics:", sorted(m.key for m in metrics))
