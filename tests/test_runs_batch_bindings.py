"""Artifact bindings in batch records: a run created in a store of the packs layout binds a
logging call's artifacts in its batch record, so a log of many small files is one record.

What is held is read back verified (before and after the seal, by a fresh reader); a
path is bound once (the same content again is a no-op, other content is refused, the
others are still bound); a path that would make a file a directory or the reverse is
refused with nothing written; two writers racing for a path leave exactly one winner;
gc keeps content bound only in an open run's batch record; a damaged batch record is
detected and named; on S3 a log of many small files costs a handful of requests.
"""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest

from casstore.exceptions import ArtifactPathConflictError, ImmutableArtifactError, IntegrityError
from casstore.objects import open_store
from casstore.runs import RunStore
from casstore.runs.batches import batches_prefix


def _tree(root: Path, n: int, seed: int = 1) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    items = []
    for i in range(n):
        p = root / f"d{i % 7}" / f"f{i:04d}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rng.randbytes(rng.randint(1, 8 << 10)))
        items.append((f"small/d{i % 7}/f{i:04d}.bin", str(p)))
    return items


def _store(path: Path) -> RunStore:
    return RunStore(open_store(path, layout="packs", stat_cache=False))


def test_a_log_of_many_small_files_is_one_batch_record_read_back_verified(tmp_path: Path) -> None:
    store = _store(tmp_path / "store")
    run = store.create_run(store.get_or_create_experiment("e"))
    items = _tree(tmp_path / "src", 300)
    big = tmp_path / "big.bin"
    big.write_bytes(random.Random(2).randbytes(300_000))  # a stored file, bound beside them
    run.log_files(items + [("big.bin", str(big))])
    keys = list(store.backend.list(f"runs/{run.run_id}/"))
    assert [k for k in keys if k.startswith(batches_prefix(run.run_id))] == [batches_prefix(run.run_id) + "0000000001"]
    assert not [k for k in keys if "/artifacts/" in k or "/dirs/" in k]
    assert len(store.get_run(run.run_id).artifacts) == 301  # open: read from the batch record
    run.end()
    reader = RunStore(open_store(tmp_path / "store", stat_cache=False))
    view = reader.get_run(run.run_id)
    assert view.digest is not None and len(view.artifacts) == 301
    for path, local in items + [("big.bin", str(big))]:
        assert reader.artifact_bytes(run.run_id, view.artifacts[path]) == Path(local).read_bytes()


def test_a_path_is_bound_once(tmp_path: Path) -> None:
    store = _store(tmp_path / "store")
    run = store.create_run(store.get_or_create_experiment("e"))
    run.log_bytes("a.txt", b"one")
    assert run.log_bytes("a.txt", b"one").digest == store.get_run(run.run_id).artifacts["a.txt"].digest
    other = tmp_path / "b.txt"
    other.write_bytes(b"bee")
    changed = tmp_path / "a.txt"
    changed.write_bytes(b"two")
    with pytest.raises(ImmutableArtifactError):
        run.log_files([("a.txt", str(changed)), ("b.txt", str(other))])
    view = store.get_run(run.run_id)
    assert store.artifact_bytes(run.run_id, view.artifacts["a.txt"]) == b"one"
    assert store.artifact_bytes(run.run_id, view.artifacts["b.txt"]) == b"bee"  # the others are bound


@pytest.mark.parametrize("first, second", [("a", "a/b"), ("a/b", "a")])
def test_a_path_that_makes_a_file_a_directory_is_refused_with_nothing_written(tmp_path: Path, first: str, second: str) -> None:
    store = _store(tmp_path / "store")
    run = store.create_run(store.get_or_create_experiment("e"))
    run.log_bytes(first, b"x")
    before = sorted(store.backend.list(batches_prefix(run.run_id)))
    other = RunStore(open_store(tmp_path / "store", stat_cache=False)).open_run(run.run_id)  # another writer
    with pytest.raises(ArtifactPathConflictError):
        other.log_bytes(second, b"y")
    assert sorted(store.backend.list(batches_prefix(run.run_id))) == before
    assert list(store.get_run(run.run_id).artifacts) == [first]


def test_two_writers_racing_for_a_path_leave_one_winner(tmp_path: Path) -> None:
    store = _store(tmp_path / "store")
    run = store.create_run(store.get_or_create_experiment("e"))
    writers = [RunStore(open_store(tmp_path / "store", stat_cache=False)).open_run(run.run_id) for _ in range(4)]
    outcome: dict[int, str] = {}
    start = threading.Barrier(len(writers))

    def go(i: int) -> None:
        start.wait()
        try:
            writers[i].log_bytes("model/weights.bin", f"writer {i}".encode())
            outcome[i] = "bound"
        except ImmutableArtifactError:
            outcome[i] = "refused"

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(writers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, o in outcome.items() if o == "bound"]
    assert len(winners) == 1 and len(outcome) == len(writers)
    run.end()
    view = store.get_run(run.run_id)
    assert store.artifact_bytes(run.run_id, view.artifacts["model/weights.bin"]) == f"writer {winners[0]}".encode()


def test_gc_keeps_content_bound_only_in_an_open_runs_batch_record(tmp_path: Path) -> None:
    from casstore.maintenance.gc import collect_garbage

    store = _store(tmp_path / "store")
    run = store.create_run(store.get_or_create_experiment("e"))
    data = random.Random(3).randbytes(400_000)
    src = tmp_path / "w.bin"
    src.write_bytes(data)
    entry = run.log_file("w.bin", src)
    for _ in range(2):  # marked by the first, swept by the second if it were unreferenced
        report = collect_garbage(store.backend, grace=0, slack=0)
        assert not report.blocked and report.pack_live_fraction == 1.0
    reader = RunStore(open_store(tmp_path / "store", stat_cache=False))
    assert reader.artifact_bytes(run.run_id, reader.get_run(run.run_id).artifacts["w.bin"]) == data
    assert entry.batch == 1
    run.end()


def test_a_damaged_batch_record_is_detected_and_named(tmp_path: Path) -> None:
    store = _store(tmp_path / "store")
    run = store.create_run(store.get_or_create_experiment("e"))
    run.log_files(_tree(tmp_path / "src", 20))
    run.end()
    key = sorted(store.backend.list(batches_prefix(run.run_id)))[0]
    path = Path(store.backend.root) / key  # type: ignore[attr-defined]
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x04
    path.write_bytes(bytes(raw))
    reader = RunStore(open_store(tmp_path / "store", stat_cache=False))
    view = reader.get_run(run.run_id)  # from the seal: the bindings are listed
    with pytest.raises(IntegrityError, match=key):
        reader.artifact_bytes(run.run_id, next(iter(view.artifacts.values())))
    from casstore.maintenance.verify import verify_store

    report = verify_store(reader)
    assert key in [p.object for p in report.problems]


def test_s3_a_log_of_many_small_files_costs_a_handful_of_requests(s3_proxy: object, s3_url: str, tmp_path: Path) -> None:
    store = RunStore(open_store(s3_url, layout="packs", stat_cache=False))
    run = store.create_run(store.get_or_create_experiment("e"))
    items = _tree(tmp_path / "src", 400)
    s3_proxy.reset_counts()  # type: ignore[attr-defined]
    run.log_files(items)
    run.end()
    assert s3_proxy.count() <= 12  # type: ignore[attr-defined]
    reader = RunStore(open_store(s3_url, stat_cache=False))
    view = reader.get_run(run.run_id)
    for path, local in items[:50]:
        assert reader.artifact_bytes(run.run_id, view.artifacts[path]) == Path(local).read_bytes()
