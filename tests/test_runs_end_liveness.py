"""An end (and a deletion) lands beside writers that take batch numbers as fast as it tries
them, and keeps every guarantee: what counted before its close is sealed, what comes after
is refused.

Deterministic: the end's store is wrapped so that, just before the end tries to create a
batch, another writer (another handle on its own store object, as another process has)
appends a batch at that very number. The real-process races are in
``tests/test_runs_end_race.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from casstore.exceptions import RunStateError
from casstore.maintenance.verify import verify_store
from casstore.runs import open_run_store
from casstore.runs.batches import batches_prefix
from casstore.runs.handle import BATCH_ATTEMPTS, RunHandle
from casstore.runs.store import RunStore

#: more numbers taken in a row than an end that lists again after each lost race tries
TAKEN = BATCH_ATTEMPTS + 50


class _Beaten:
    """A backend whose batch creates are each preceded by ``before()``, ``times`` times."""

    def __init__(self, backend: Any, run_id: str, times: int, before: Callable[[int], None]) -> None:
        self._backend, self._prefix, self._left, self._before, self.tries = backend, batches_prefix(run_id), times, before, 0

    def put_if_absent(self, key: str, data: bytes) -> bool:
        if key.startswith(self._prefix):
            self.tries += 1
            if self._left > 0:
                self._left -= 1
                self._before(self._left)
        return bool(self._backend.put_if_absent(key, data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)


def _beaten(store: RunStore, handle: RunHandle, times: int, before: Callable[[int], None]) -> _Beaten:
    wrapped = _Beaten(store.backend, handle.run_id, times, before)
    handle._backend = wrapped  # type: ignore[assignment]
    return wrapped


def test_an_end_lands_although_every_number_it_tries_is_taken_first(tmp_path: Path) -> None:
    writers_store = open_run_store(tmp_path / "s")
    writer = writers_store.create_run("0")
    writer.log_param("first", "1")
    writer.log_metric("m", 0.0, step=0)
    writer.flush_metrics()
    ender_store = open_run_store(tmp_path / "s")
    ender = ender_store.open_run(writer.run_id)
    ender.log_metric("mine", 1.0, step=0)  # buffered: goes in the closing batch
    wrapped = _beaten(ender_store, ender, TAKEN, lambda left: writer.log_param(f"p{left}", str(left)))
    digest = ender.end()  # the first call succeeds
    assert wrapped.tries == TAKEN + 1  # each taken number tried once, then the next: no listing between
    view = open_run_store(tmp_path / "s").get_run(writer.run_id)
    assert view.sealed and view.digest == digest and view.status == "FINISHED"
    # every batch that won its number before the close is in the seal
    assert view.params == {"first": "1", **{f"p{i}": str(i) for i in range(TAKEN)}}
    assert sorted(p[0] for p in view.points) == ["m", "mine"]
    with pytest.raises(RunStateError, match="sealed"):  # and nothing after it counts
        writer.log_param("late", "1")


def test_an_end_beaten_by_another_end_seals_the_first_close(tmp_path: Path) -> None:
    """Two ends: the other one's close takes the number this end tries; this end's close lands
    after it and does not count. The first close's status is sealed, and this end's buffered
    point, in a close that does not count, is still in the seal (taken from its metric log)."""
    first_store = open_run_store(tmp_path / "s")
    first = first_store.create_run("0")
    first.log_param("a", "1")
    other = open_run_store(tmp_path / "s").open_run(first.run_id)
    first.log_metric("late_point", 2.0, step=1)

    def other_closes(left: int) -> None:  # the other end writes its close (and stops before its seal)
        from casstore.runs.batches import Batch, batch_key

        folded = other._sync_batches(other._backend.list(batches_prefix(other.run_id)))
        n = other._next_number(folded)
        assert other._backend.put_if_absent(batch_key(other.run_id, n),
                                            Batch(n, close={"status": "KILLED", "end_time": 7}, time=7).to_bytes())

    _beaten(first_store, first, 1, other_closes)
    digest = first.end("FINISHED")
    view = open_run_store(tmp_path / "s").get_run(first.run_id)
    assert (view.digest, view.status, view.end_time) == (digest, "KILLED", 7)
    assert view.params == {"a": "1"} and [p[0] for p in view.points] == ["late_point"]
    assert other.end() == digest
    # the close that did not count stays beside the seal, as a batch after a fence does: no damage
    reader = open_run_store(tmp_path / "s")
    assert verify_store(reader).ok and verify_store(reader, deep=True).ok
    resumed = reader.reopen_run(first.run_id)  # a resumed generation numbers after it
    resumed.log_param("b", "2")
    resumed.end()
    assert reader.get_run(first.run_id).params == {"a": "1", "b": "2"}


def test_a_deletion_lands_although_every_number_it_tries_is_taken_first(tmp_path: Path) -> None:
    writers_store = open_run_store(tmp_path / "s")
    writer = writers_store.create_run("0")
    writer.log_param("first", "1")
    deleting = open_run_store(tmp_path / "s")
    real = RunHandle.fence_deleted

    def fence(handle: RunHandle, reason: str) -> None:
        _beaten(deleting, handle, TAKEN, lambda left: writer.log_param(f"p{left}", str(left)))
        real(handle, reason)

    mp = pytest.MonkeyPatch()
    mp.setattr(RunHandle, "fence_deleted", fence)
    try:
        deleting.delete_run(writer.run_id, "mistake")  # the first call succeeds
    finally:
        mp.undo()
    assert open_run_store(tmp_path / "s").get_run(writer.run_id).deleted
    with pytest.raises(RunStateError, match="deleted"):
        writer.log_param("late", "1")


def test_the_seal_holds_a_record_its_listing_missed_that_a_batch_below_the_close_lists(tmp_path: Path) -> None:
    """A listing is no snapshot: a directory read, or S3's pages, can show a batch and miss a
    record its writer bound before it (here: the end's listing leaves out the model record). The
    writer's batch is below the close, so its call returned as kept: the seal must hold it."""
    writers_store = open_run_store(tmp_path / "s")
    writer = writers_store.create_run("0")
    digest = writers_store.objects.put_bytes(b"weights" * 100).digest
    entry = {"v": 1, "kind": "model", "name": "clf", "run_id": writer.run_id, "created": "", "flavors": {"x": {}},
             "files": {"w": {"digest": digest, "size": 700}}}
    writer.add_model("clf", entry)  # the model record, then the batch listing it: returned, so kept
    ender_store = open_run_store(tmp_path / "s")
    ender = ender_store.open_run(writer.run_id)

    class Missing:
        def list(self, prefix: str = "") -> list[str]:
            return [k for k in ender_store.backend.list(prefix) if "/models/" not in k]

        def __getattr__(self, name: str) -> Any:
            return getattr(ender_store.backend, name)

    ender._backend = Missing()  # type: ignore[assignment]
    ender.end()
    assert "clf" in open_run_store(tmp_path / "s").get_run(writer.run_id).models


def test_an_end_whose_listed_batches_another_end_removed_returns_that_seal(tmp_path: Path) -> None:
    """Two ends on a local disk: the other one seals and removes the batches (compacting)
    between this end's listing and its reading them. This end returns the run's digest, as an
    end of a run already sealed does, instead of refusing."""
    writer = open_run_store(tmp_path / "s").create_run("0")
    writer.log_param("a", "1")
    writer.log_metric("m", 1.0, step=0)
    writer.flush_metrics()
    other = open_run_store(tmp_path / "s").open_run(writer.run_id)
    ender_store = open_run_store(tmp_path / "s")
    ender = ender_store.open_run(writer.run_id)
    sealed: list[str] = []

    class SealedAfterListing:
        def list(self, prefix: str = "") -> list[str]:
            keys = list(ender_store.backend.list(prefix))
            if not sealed:
                sealed.append(other.end("KILLED"))  # seals, then removes the batches just listed
            return keys

        def __getattr__(self, name: str) -> Any:
            return getattr(ender_store.backend, name)

    ender._backend = SealedAfterListing()  # type: ignore[assignment]
    assert ender.end() == sealed[0]
    assert open_run_store(tmp_path / "s").get_run(writer.run_id).status == "KILLED"
