"""Where the models layer meets the tracking API: the current store and the run to log into.

The tracking API sits above this layer, so it is imported when first needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from casstore.runs import RunHandle, RunStore

__all__ = ["artifacts_model_dir", "current_store", "last_logged_model_id", "logging_run", "note_logged_model"]

#: the model id (model digest) this process logged last (MLflow's ``last_logged_model``)
_last_logged: str | None = None


def note_logged_model(model_id: str) -> None:
    global _last_logged
    _last_logged = model_id


def last_logged_model_id() -> str | None:
    return _last_logged


def current_store() -> RunStore:
    """The store of the active run, else of the current tracking URI."""
    from casstore.tracking.fluent import active_client

    return active_client().store


@contextmanager
def logging_run() -> Iterator[RunHandle]:
    """The active run's writer; with no active run, a run of its own, ended on exit
    (as FAILED if the body raises)."""
    from casstore.tracking import fluent

    run = fluent.active_run()
    if run is not None:
        yield fluent.active_client()._handle(run.info.run_id)
        return
    with fluent.start_run() as own:
        yield fluent.active_client()._handle(own.info.run_id)


def artifacts_model_dir(model_uri: str, store: RunStore) -> str | None:
    """For a ``runs:/<run_id>/<path>`` whose path is no logged model but a directory of the
    run's artifacts holding an ``MLmodel`` (a model written with ``save_model`` and logged
    with ``log_artifacts``, as MLflow scripts do): those files, each verified, downloaded to
    a private directory, to be loaded as a local model directory. Else ``None``."""
    from casstore.models.local import kept_dir
    from casstore.models.uri import parse_model_uri
    from casstore.tracking import _artifacts

    p = parse_model_uri(model_uri)
    if p.kind != "runs" or p.run_id is None or not p.path:
        return None
    view = store.get_run(p.run_id)
    if f"{p.path}/MLmodel" not in view.artifacts:
        return None
    return _artifacts.download(store, view, p.path, kept_dir("casstore-model-"))
