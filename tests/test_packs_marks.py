"""Writers of a packs store check gc's marks instead of freshening every pack they reuse.

A writer reuses chunks of stored packs without a request per pack: at the first reuse of a
put it lists gc's candidates records and the index objects, and touches only the reused
packs a record marks (or that no index lists). gc, for its part, sweeps a marked pack only
once the grace period has passed since its candidates record was *written* (the record's
time in the store), and replaces every index object that lists a pack gone before it
removes the records that marked them. The argument: docs/design.md, "Garbage collection".
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from casstore.maintenance import gc as gc_mod
from casstore.maintenance.gc import collect_garbage
from casstore.objects import ObjectStore, open_store
from casstore.objects.packs import CANDIDATES_PREFIX, INDEX_PREFIX
from casstore.runs import RunStore
from test_packs import _bytes, _count_requests, _keys, any_s3  # noqa: F401  (any_s3: a fixture)


def _garbage_pack(root: Path, data: bytes) -> tuple[ObjectStore, str, str]:
    """A packs store holding ``data`` (one chunk) in a pack nothing references: the store,
    the chunk's digest and the pack's key."""
    store = open_store(root, layout="packs", stat_cache=False)
    digest = store.put_bytes(data).digest
    store.flush()
    (pack,) = _keys(store, "packs/")
    return store, digest, pack


def test_a_put_does_not_rely_on_a_check_made_before_gc_marked_and_swept_the_pack(tmp_path: Path) -> None:
    """Two puts of the same content without a flush between them, gc marking and sweeping the
    pack meanwhile: the second put checks gc's marks again and stores the chunk anew, so the
    record published after it reads back (a freshening made by the first put counted for
    the second once, and the record pointed at a deleted pack)."""
    data = _bytes(30_000, 1)
    _, digest, pack = _garbage_pack(tmp_path / "store", data)
    store = RunStore(open_store(tmp_path / "store", stat_cache=False))
    assert store.objects.put_bytes(data).digest == digest  # deduplicated against the pack
    time.sleep(0.05)
    assert collect_garbage(store.backend, grace=1.0, slack=0).marked.get("packs") == 1
    time.sleep(1.2)
    swept = collect_garbage(store.backend, grace=1.0, slack=0)
    assert swept.packs_deleted == 1 and pack not in _keys(store.objects, "packs/")
    # a second put of the same content, as a logging call after the first, without a flush between
    stored = store.objects.put_bytes(data)
    run = store.create_run(store.get_or_create_experiment("marks"))
    run.bind_artifact("data.bin", stored.digest, stored.size)
    run.end()
    reader = RunStore(open_store(tmp_path / "store", stat_cache=False))
    entry = reader.get_run(run.run_id).artifacts["data.bin"]
    assert reader.artifact_bytes(run.run_id, entry) == data
    assert collect_garbage(reader.backend, grace=0, slack=0).ok
    assert reader.artifact_bytes(run.run_id, entry) == data


def test_a_writer_that_checked_before_the_record_was_written_is_covered_by_its_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Controlled order: gc reads its clock (the mark time), then a writer checks the marks
    and reuses the pack (no record lists it yet, so it does not touch it), then gc writes its
    candidates record. A gc run a grace period after the mark time, but not after the
    record's time, must not sweep the pack: the writer publishes its reference after that
    run's scan, within the grace period of its check."""
    grace = 2.0
    data = _bytes(30_000, 2)
    _, digest, pack = _garbage_pack(tmp_path / "store", data)
    writer = open_store(tmp_path / "store", stat_cache=False)
    touched: list[str] = []
    real_touch = writer.backend.touch
    monkeypatch.setattr(writer.backend, "touch", lambda key: touched.append(key) or real_touch(key))

    scanning, checked = threading.Event(), threading.Event()
    real_scan = gc_mod.scan_store

    def slow_scan(*args: Any, **kwargs: Any) -> Any:
        scanning.set()  # the mark time is read
        assert checked.wait(30)
        return real_scan(*args, **kwargs)

    monkeypatch.setattr(gc_mod, "scan_store", slow_scan)
    marking: dict[str, Any] = {}
    first = threading.Thread(target=lambda: marking.update(report=collect_garbage(writer.backend, grace=grace, slack=0)))
    time.sleep(0.05)
    first.start()
    assert scanning.wait(30)
    time.sleep(1.0)  # the writer checks well after the mark time
    check_time = time.time()
    assert writer.put_bytes(data).digest == digest  # its check lists no record: nothing touched
    checked.set()
    first.join(30)
    monkeypatch.setattr(gc_mod, "scan_store", real_scan)
    assert marking["report"].marked.get("packs") == 1 and touched == []
    (record,) = _keys(writer, CANDIDATES_PREFIX)
    assert writer.backend.info(record).mtime - marking["report"].started >= 0.9

    # a grace period after the mark time, before a grace period after the record was written
    time.sleep(max(0.0, marking["report"].started + grace + 0.05 - time.time()))
    early = collect_garbage(writer.backend, grace=grace, slack=0)
    assert early.packs_deleted == 0 and early.pending_records == 1
    assert pack in _keys(writer, "packs/")
    # the writer publishes its reference, within the grace period of its check
    writer.flush()
    writer.backend.put_blob("userdata/reference", digest.encode())  # a root: a record of a kind gc does not know
    assert time.time() - check_time < grace
    time.sleep(max(0.0, writer.backend.info(record).mtime + grace + 0.05 - time.time()))
    late = collect_garbage(writer.backend, grace=grace, slack=0)
    # the record is due now, and the pack live: the scan read the reference
    assert late.packs_deleted == 0 and late.packs_kept_fresh == 1 and record not in _keys(writer, CANDIDATES_PREFIX)
    assert open_store(tmp_path / "store", stat_cache=False).get_bytes(digest) == data


def test_gc_replaces_an_index_of_a_pack_a_stopped_gc_deleted_before_dropping_its_mark(tmp_path: Path) -> None:
    """A gc stopped after deleting a marked pack leaves its record and the index that lists
    the pack. The next gc replaces that index before it removes the record, so a writer that
    lists neither the mark nor the index stores the chunk anew instead of reusing the pack."""
    data = _bytes(30_000, 3)
    store, digest, pack = _garbage_pack(tmp_path / "store", data)
    time.sleep(0.01)
    assert collect_garbage(store.backend, grace=3600, slack=0).marked.get("packs") == 1
    (index_key,) = _keys(store, INDEX_PREFIX)
    store.backend.delete(pack)  # the stopped gc's deletion
    report = collect_garbage(store.backend, grace=0, slack=0)
    assert report.indexes_rewritten == 1 and index_key not in _keys(store, INDEX_PREFIX)
    assert _keys(store, CANDIDATES_PREFIX) == []
    writer = open_store(tmp_path / "store", stat_cache=False)
    assert writer.put_bytes(data).digest == digest
    writer.flush()
    assert writer.bytes_written == len(data)  # stored anew
    assert open_store(tmp_path / "store", stat_cache=False).get_bytes(digest) == data


def test_on_s3_a_writer_touches_the_pack_gc_marked_and_the_sweep_keeps_it(any_s3: str, tmp_path: Path) -> None:
    """On S3 (whole-second times, a touch is a self-copy): gc marks a dead pack; a writer that
    reuses its chunk copies that pack onto itself and no other; the next sweep keeps it and
    the run reads whole."""
    kept, dead = _bytes(30_000, 4), _bytes(30_000, 5)
    store = RunStore(open_store(any_s3, layout="packs", stat_cache=False))
    exp = store.get_or_create_experiment("marks")
    live = store.create_run(exp)
    live.log_bytes("kept.bin", kept)  # a pack of its own, live
    live.end()
    gone = store.create_run(exp)
    entry = gone.log_bytes("dead.bin", dead)
    gone.end()
    store.delete_run(gone.run_id, "test")
    time.sleep(1.1)  # S3 keeps whole seconds: the mark must come after the packs' times
    assert collect_garbage(store.backend, grace=0, slack=0).marked.get("packs") == 1
    time.sleep(1.1)
    writer = RunStore(open_store(any_s3, stat_cache=False))
    counts = _count_requests(writer.objects)
    run = writer.create_run(writer.get_or_create_experiment("marks"))
    run.log_bytes("dead.bin", dead)
    run.log_bytes("kept.bin", kept)
    run.end()
    assert writer.objects.bytes_written == 0
    assert counts.get("COPY", 0) == 1, counts  # the marked pack, once; the live one not at all
    swept = collect_garbage(store.backend, grace=0, slack=0)
    assert swept.packs_deleted == 0 and swept.packs_kept_fresh == 1
    reader = RunStore(open_store(any_s3, stat_cache=False))
    view = reader.get_run(run.run_id)
    assert reader.artifact_bytes(run.run_id, view.artifacts["dead.bin"]) == dead
    assert view.artifacts["dead.bin"].digest == entry.digest
    assert reader.artifact_bytes(run.run_id, view.artifacts["kept.bin"]) == kept

