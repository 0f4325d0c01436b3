"""MLflow's ``mlflow.data.pandas_dataset`` import path."""

from casstore.data import PandasDataset, from_pandas

__all__ = ["PandasDataset", "from_pandas"]
