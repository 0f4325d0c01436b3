"""``casstore.types``: the schema types of model signatures, where MLflow's ``mlflow.types``
keeps them (``from casstore.types import Schema, ColSpec``); the same classes as
``casstore.models``."""

from casstore.models.signature import ColSpec, DataType, ParamSchema, ParamSpec, Schema, TensorSpec

__all__ = ["ColSpec", "DataType", "ParamSchema", "ParamSpec", "Schema", "TensorSpec"]
