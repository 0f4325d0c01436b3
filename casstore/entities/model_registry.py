"""MLflow's ``mlflow.entities.model_registry`` import path: the registry's entities."""

from casstore.registry.entities import ModelVersion, RegisteredModel

__all__ = ["ModelVersion", "RegisteredModel"]
