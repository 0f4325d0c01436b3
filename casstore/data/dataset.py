"""MLflow's ``mlflow.data.dataset`` import path."""

from casstore.data import Dataset

__all__ = ["Dataset"]
