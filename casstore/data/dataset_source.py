"""MLflow's ``mlflow.data.dataset_source`` import path."""

from casstore.data import DatasetSource

__all__ = ["DatasetSource"]
