"""MLflow's ``mlflow.client`` import path: ``from casstore.client import MlflowClient``."""

from casstore.tracking.client import Client, MlflowClient

__all__ = ["Client", "MlflowClient"]
