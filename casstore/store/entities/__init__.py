"""MLflow's ``mlflow.store.entities`` import path."""

from casstore.tracking.entities import PagedList

__all__ = ["PagedList"]
