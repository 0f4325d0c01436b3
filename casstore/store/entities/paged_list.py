"""MLflow's ``mlflow.store.entities.paged_list`` import path: ``PagedList``, one page of a
client search (a list, and ``token`` for the next page)."""

from casstore.tracking.entities import PagedList

__all__ = ["PagedList"]
