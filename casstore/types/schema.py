"""``casstore.types.schema``, as MLflow's ``mlflow.types.schema``."""

from casstore.models.signature import ColSpec, DataType, Schema, TensorSpec

__all__ = ["ColSpec", "DataType", "Schema", "TensorSpec"]
