"""MLflow's ``mlflow.data.numpy_dataset`` import path."""

from casstore.data import NumpyDataset, from_numpy

__all__ = ["NumpyDataset", "from_numpy"]
