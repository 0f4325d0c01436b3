"""MLflow's ``mlflow.data.http_dataset_source`` import path."""

from casstore.data import HTTPDatasetSource

__all__ = ["HTTPDatasetSource"]
