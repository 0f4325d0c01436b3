"""MLflow's ``mlflow.data.filesystem_dataset_source`` import path."""

from casstore.data import FileSystemDatasetSource

__all__ = ["FileSystemDatasetSource"]
