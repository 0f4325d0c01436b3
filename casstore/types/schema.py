"""``casstore.types.schema``, as MLflow's ``mlflow.types.schema``."""

from casstore.models.signature import ColSpec, DataType, ParamSchema, ParamSpec, Schema, TensorSpec

__all__ = ["ColSpec", "DataType", "ParamSchema", "ParamSpec", "Schema", "TensorSpec"]
