"""MLflow's ``mlflow.data.code_dataset_source`` import path."""

from casstore.data import CodeDatasetSource

__all__ = ["CodeDatasetSource"]
