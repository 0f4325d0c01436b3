"""Where the models layer meets the tracking API: the current store and the run to log into."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from casstore.runs import RunHandle, RunStore

__all__ = ["current_store", "logging_run"]


def current_store() -> RunStore:
    """The run store of the current tracking URI."""
    from casstore.tracking.uri import get_store

    return get_store()


def _handle(store: RunStore, run_id: str) -> RunHandle:
    from casstore.tracking.uri import cached_handle, remember_handle

    return cached_handle(store, run_id) or remember_handle(store, store.open_run(run_id))


@contextmanager
def logging_run() -> Iterator[RunHandle]:
    """The active run's writer; with no active run, a run of its own, ended on exit
    (as FAILED if the body raises)."""
    from casstore.tracking import fluent

    run = fluent.active_run()
    if run is not None:
        yield _handle(current_store(), run.info.run_id)
        return
    with fluent.start_run() as own:
        yield _handle(current_store(), own.info.run_id)
