"""A process that goes through many stores holds a few open, not every one it used."""

from __future__ import annotations

import gc
import threading
from pathlib import Path

import pytest

import casstore
from casstore.runs import RunStore
from casstore.tracking import fluent, uri

pytestmark = pytest.mark.usefixtures("store_layout")


def live_stores(under: Path) -> list[RunStore]:
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, RunStore) and str(o.url).startswith(str(under))]


def test_stores_used_before_are_let_go_with_their_threads(tmp_path: Path) -> None:
    """Each store used through the fluent API and then left (a test suite, a sweep over
    stores) is let go once a few newer ones are in use: its pack writer's thread and its
    caches with it. Before, every one stayed open to the end of the process."""
    threads_before = threading.active_count()
    for i in range(3 * uri._RECENT_STORES):
        fluent._reset()
        casstore.set_tracking_uri(str(tmp_path / f"store{i}"))
        with casstore.start_run():
            casstore.log_text("content " * 1000, "notes.txt")
        assert casstore.search_runs(output_format="list")
    assert len(live_stores(tmp_path)) <= uri._RECENT_STORES
    assert threading.active_count() - threads_before <= 2 * uri._RECENT_STORES


def test_a_store_in_use_stays_open_and_is_not_opened_twice(tmp_path: Path) -> None:
    """A store with an open run is kept by that run however many stores are used after it,
    and asking for it again gives the same store, not a second one."""
    fluent._reset()
    first = str(tmp_path / "first")
    casstore.set_tracking_uri(first)
    run = casstore.start_run()
    store = uri.get_store(first)
    for i in range(2 * uri._RECENT_STORES):
        uri.get_store(str(tmp_path / f"other{i}"))
    assert uri.get_store(first) is store
    casstore.log_param("p", 1)
    casstore.end_run()
    assert casstore.get_run(run.info.run_id).data.params == {"p": "1"}
