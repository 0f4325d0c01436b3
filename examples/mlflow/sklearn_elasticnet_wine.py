"""Wine regression with ElasticNet, in the shape of MLflow's sklearn_elasticnet_wine example.

Only the imports differ from the MLflow script: `import mlflow` became `import casstore as
mlflow`. Run: python sklearn_elasticnet_wine.py [alpha] [l1_ratio]
"""

import sys

import numpy as np
from sklearn.datasets import load_wine
from sklearn.linear_model import ElasticNet
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.model_selection import train_test_split

import casstore as mlflow
from casstore.models import infer_signature


def eval_metrics(actual, pred):
    rmse = np.sqrt(mean_squared_error(actual, pred))
    return rmse, mean_absolute_error(actual, pred), r2_score(actual, pred)


if __name__ == "__main__":
    np.random.seed(40)
    wine = load_wine(as_frame=True)
    data = wine.frame
    # the wine's class (0, 1, 2) plays the part of the quality score the original predicts
    train, test = train_test_split(data, random_state=42)
    train_x, test_x = train.drop(["target"], axis=1), test.drop(["target"], axis=1)
    train_y, test_y = train[["target"]], test[["target"]]

    alpha = float(sys.argv[1]) if len(sys.argv) > 1 else 0.5
    l1_ratio = float(sys.argv[2]) if len(sys.argv) > 2 else 0.5

    with mlflow.start_run() as run:
        lr = ElasticNet(alpha=alpha, l1_ratio=l1_ratio, random_state=42)
        lr.fit(train_x, train_y)
        predicted = lr.predict(test_x)
        rmse, mae, r2 = eval_metrics(test_y, predicted)

        print(f"Elasticnet model (alpha={alpha:f}, l1_ratio={l1_ratio:f}):")
        print(f"  RMSE: {rmse}")
        print(f"  MAE: {mae}")
        print(f"  R2: {r2}")

        mlflow.log_param("alpha", alpha)
        mlflow.log_param("l1_ratio", l1_ratio)
        mlflow.log_metric("rmse", rmse)
        mlflow.log_metric("r2", r2)
        mlflow.log_metric("mae", mae)

        signature = infer_signature(train_x, lr.predict(train_x))
        mlflow.sklearn.log_model(lr, name="model", signature=signature, input_example=train_x.iloc[:2])
    print(f"run_id: {run.info.run_id}")
