"""Where the models layer meets the tracking API: the current store and the run to log into.

The tracking API sits above this layer, so it is imported when first needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from casstore.runs import RunHandle, RunStore

__all__ = ["current_store", "logging_run", "note_logged_model"]


def note_logged_model(model_id: str) -> None:
    """Tell the tracking API the model this process logged last (``last_logged_model``)."""
    from casstore.tracking import fluent

    fluent._note_logged_model(model_id)


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

