"""Garbage collection: exactly the unreferenced objects go, after two runs and the grace
period; whatever a live run, a registry version or a recent writer uses stays. That
includes files stored as one chunk without a recipe (format version 2), and version-1
stores with their two-level fan-out."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest
from blake3 import blake3

from casstore.backend import LocalBackend, MemoryBackend
from casstore.exceptions import InvalidInputError
from casstore.maintenance.gc import collect_garbage, format_duration, parse_duration
from casstore.maintenance.scan import scan_store
from casstore.maintenance.verify import verify_store
from casstore.objects import ChunkerParams, StoreConfig, open_store
from casstore.runs import RunStore

SMALL = ChunkerParams(min_size=1024, avg_size=4096, max_size=16384)


def small_store(url: str) -> RunStore:
    return RunStore(open_store(url, chunker=SMALL))


def age(root: Path, seconds: float = 3600) -> None:
    """Make every stored content object look ``seconds`` old (as if written long ago)."""
    past = time.time() - seconds
    for kind in ("chunks", "files", "models"):
        for p in (root / kind).rglob("*"):
            if p.is_file():
                os.utime(p, (past, past))


def content(store: RunStore) -> dict[str, set[str]]:
    return scan_store(store.backend, store.objects.layout).content


def log_run(store: RunStore, files: dict[str, bytes], *, end: bool = True) -> str:
    """A run binding ``files``, each stored in the object store (what gc collects; a small
    artifact logged with ``log_bytes`` is held in its run record instead)."""
    h = store.create_run(store.get_or_create_experiment("gc"))
    for path, data in files.items():
        h.bind_artifact(path, *store.objects.put_bytes(data))
    if end:
        h.end()
    return h.run_id


def needed(store: RunStore, run_ids: list[str]) -> dict[str, set[str]]:
    """The objects the given runs need, computed independently of gc (through the runs API)."""
    out: dict[str, set[str]] = {"files": set(), "chunks": set(), "models": set()}
    for r in run_ids:
        view = store.get_run(r)
        for a in view.artifacts.values():
            if a.inline:
                continue  # held in its run record, no content object
            chunks = store.objects.chunk_digests(a.digest)
            if chunks != [a.digest] or store.objects.layout.recipe_for_one_chunk:
                out["files"].add(a.digest)  # a recipe (none for a file that is its one chunk, in version 2)
            out["chunks"].update(chunks)
        for m in view.models.values():
            out["models"].add(m.digest)
    return out


def with_garbage(root: Path, rng: random.Random, *, aged: bool = True) -> RunStore:
    """A store whose only run is deleted (its data is garbage), aged past any grace period."""
    store = small_store(str(root))
    store.delete_run(log_run(store, {"a.bin": rng.randbytes(30_000)}))
    if aged:
        age(root)
    return store


def marked_garbage(root: Path, data: bytes) -> RunStore:
    """A store where ``data`` was logged by a run since deleted, and a first gc marked it."""
    store = small_store(str(root))
    store.delete_run(log_run(store, {"a.bin": data}))
    age(root)
    first = collect_garbage(store.backend, grace=0)
    assert first.marked["files"] == 1
    return store


@pytest.fixture
def rng() -> random.Random:
    return random.Random(1234)


def test_parse_and_format_durations() -> None:
    assert parse_duration("24h") == 86400
    assert parse_duration("1h30m") == 5400
    assert parse_duration("0s") == 0
    assert parse_duration("0") == 0
    # a bare number could mean hours as well as seconds: refused, with the units to choose from
    with pytest.raises(InvalidInputError, match=r"'24' has no unit: write 24h for hours.* or 24s for seconds"):
        parse_duration("24")
    assert parse_duration("2d") == 2 * 86400
    assert parse_duration("500ms") == 0.5
    for bad in ("", "soon", "1x", "h1", "-1h"):
        with pytest.raises(InvalidInputError, match="duration"):
            parse_duration(bad)
    assert format_duration(5400) == "1h30m"
    assert format_duration(0) == "0s"


def test_two_runs_remove_exactly_the_unreferenced_objects(tmp_path: Path, rng: random.Random) -> None:
    store = small_store(str(tmp_path / "s"))
    shared = rng.randbytes(60_000)
    keep = log_run(store, {"shared.bin": shared, "b.bin": rng.randbytes(40_000)})
    gone = log_run(store, {"shared.bin": shared, "a.bin": rng.randbytes(40_000),
                           "edited.bin": shared[:30_000] + b"x" + shared[30_000:]})
    store.delete_run(gone, "test")
    before = content(store)
    want = needed(store, [keep])
    assert want["chunks"] < before["chunks"] and want["files"] < before["files"]
    age(tmp_path / "s")

    first = collect_garbage(store.backend, grace=0)
    assert first.deleted_total == 0, "the first run only marks"
    assert content(store) == before
    assert first.marked["files"] == len(before["files"] - want["files"])
    assert first.marked["chunks"] == len(before["chunks"] - want["chunks"])

    second = collect_garbage(store.backend, grace=0)
    after = content(store)
    assert after["files"] == want["files"]
    assert after["chunks"] == want["chunks"]
    assert second.deleted["chunks"] == len(before["chunks"] - want["chunks"])
    assert second.deleted_bytes > 0
    assert verify_store(store).ok
    assert store.objects.get_bytes(store.get_run(keep).artifacts["shared.bin"].digest) == shared
    # the deleted run's records stay: deletion is recorded, not silent
    assert store.get_run(gone).deleted


def test_nothing_is_deleted_before_the_grace_period(tmp_path: Path, rng: random.Random) -> None:
    store = with_garbage(tmp_path / "s", rng)
    before = content(store)
    r1 = collect_garbage(store.backend, grace=3600)
    r2 = collect_garbage(store.backend, grace=3600)
    assert r1.marked_total > 0 and r2.deleted_total == 0
    assert r2.pending_records == 1 and r2.next_sweep is not None and r2.next_sweep > time.time() + 3000
    assert content(store) == before


def test_recently_written_garbage_is_kept(tmp_path: Path, rng: random.Random) -> None:
    """Objects younger than the grace period (plus slack) stay, even when unreferenced."""
    store = with_garbage(tmp_path / "s", rng, aged=False)
    before = content(store)
    collect_garbage(store.backend, grace=0)
    r = collect_garbage(store.backend, grace=0)
    assert r.deleted_total == 0 and r.kept_fresh > 0
    assert content(store) == before


def test_content_reused_after_marking_survives_the_sweep(tmp_path: Path, rng: random.Random) -> None:
    """A writer that deduplicates against marked garbage freshens it, so the sweep keeps it."""
    data = rng.randbytes(50_000)
    store = marked_garbage(tmp_path / "s", data)
    reborn = log_run(store, {"again.bin": data})  # dedup hit on the marked recipe: touched
    second = collect_garbage(store.backend, grace=0)
    assert second.deleted_total == 0
    assert store.objects.get_bytes(store.get_run(reborn).artifacts["again.bin"].digest) == data
    assert verify_store(store).ok


def test_chunk_reused_by_another_file_after_marking_survives(tmp_path: Path, rng: random.Random) -> None:
    data = rng.randbytes(80_000)
    store = marked_garbage(tmp_path / "s", data)
    edited = data[:40_000] + b"changed" + data[40_000:]  # shares most chunks with the garbage file
    reborn = log_run(store, {"edited.bin": edited})
    r = collect_garbage(store.backend, grace=0)
    assert r.deleted["files"] == 1  # the old file's recipe goes; its chunks shared with the new file stay
    assert store.objects.get_bytes(store.get_run(reborn).artifacts["edited.bin"].digest) == edited
    assert verify_store(store).ok


def test_open_runs_and_runs_without_a_seal_are_roots(tmp_path: Path, rng: random.Random) -> None:
    store = small_store(str(tmp_path / "s"))
    data = rng.randbytes(30_000)
    open_run = log_run(store, {"a.bin": data}, end=False)
    age(tmp_path / "s")
    collect_garbage(store.backend, grace=0)
    r = collect_garbage(store.backend, grace=0)
    assert r.marked_total == 0 and r.deleted_total == 0
    assert store.objects.get_bytes(store.get_run(open_run).artifacts["a.bin"].digest) == data


def test_registered_model_keeps_a_deleted_runs_model_files(tmp_path: Path, rng: random.Random) -> None:
    from casstore.registry import Registry

    store = small_store(str(tmp_path / "s"))
    h = store.create_run(store.get_or_create_experiment("gc"))
    weights = h.log_bytes("m/model.bin", rng.randbytes(40_000))
    other = h.log_bytes("notes.txt", rng.randbytes(20_000))
    entry = {"v": 1, "kind": "model", "name": "m", "run_id": h.run_id, "created": "", "flavors": {"x": {}},
             "files": {"model.bin": {"digest": weights.digest, "size": weights.size}}}
    model_digest = h.add_model("m", entry)
    h.end()
    Registry(store.backend).create_version("fraud", model_digest, run_id=h.run_id)
    store.delete_run(h.run_id)
    age(tmp_path / "s")
    collect_garbage(store.backend, grace=0)
    r = collect_garbage(store.backend, grace=0)
    left = content(store)
    assert model_digest in left["models"] and weights.digest in left["files"]
    assert other.digest not in left["files"] and r.deleted["files"] == 1
    assert store.objects.get_bytes(weights.digest)  # whole and verified

    # once the version is deleted too, the model goes as well
    Registry(store.backend).delete_version("fraud", 1)
    age(tmp_path / "s")
    collect_garbage(store.backend, grace=0)
    collect_garbage(store.backend, grace=0)
    left = content(store)
    assert not left["models"] and not left["files"] and not left["chunks"]


def test_dry_run_changes_nothing(tmp_path: Path, rng: random.Random) -> None:
    store = with_garbage(tmp_path / "s", rng)
    collect_garbage(store.backend, grace=0)
    listing = sorted(store.backend.list(""))
    r = collect_garbage(store.backend, grace=0, dry_run=True)
    assert r.dry_run and r.deleted_total > 0
    assert sorted(store.backend.list("")) == listing


def test_a_damaged_candidates_record_only_delays_collection(tmp_path: Path, rng: random.Random) -> None:
    store = with_garbage(tmp_path / "s", rng)
    collect_garbage(store.backend, grace=0)
    (key,) = list(store.backend.list("gc/candidates/"))
    (tmp_path / "s" / key).write_bytes(b"\xc1 not msgpack")
    r = collect_garbage(store.backend, grace=0)
    assert r.deleted_total == 0 and r.marked_total > 0
    assert collect_garbage(store.backend, grace=0).deleted_total > 0


# ---- files stored as one chunk, and version-1 stores --------------------------------------------


def test_files_of_one_chunk_are_kept_while_live_and_collected_when_not(tmp_path: Path, rng: random.Random) -> None:
    store = small_store(str(tmp_path / "s"))
    kept_small, gone_small, shared_small = rng.randbytes(900), rng.randbytes(800), rng.randbytes(700)
    keep = log_run(store, {"k.txt": kept_small, "shared.txt": shared_small, "big.bin": rng.randbytes(30_000)})
    gone = log_run(store, {"g.txt": gone_small, "shared.txt": shared_small})
    digests = {name: blake3(data).hexdigest() for name, data in
               (("kept", kept_small), ("gone", gone_small), ("shared", shared_small))}
    before = content(store)
    for d in digests.values():
        assert d in before["chunks"] and d not in before["files"], "a one-chunk file is its chunk, with no recipe"
    store.delete_run(gone)
    age(tmp_path / "s")
    first = collect_garbage(store.backend, grace=0)
    assert first.marked == {"models": 0, "files": 0, "chunks": 1}
    second = collect_garbage(store.backend, grace=0)
    assert second.deleted == {"models": 0, "files": 0, "chunks": 1}
    after = content(store)
    assert digests["kept"] in after["chunks"] and digests["shared"] in after["chunks"]
    assert digests["gone"] not in after["chunks"]
    assert after == needed(store, [keep])
    assert store.objects.get_bytes(digests["kept"]) == kept_small
    assert verify_store(store).ok


def test_a_one_chunk_file_stored_again_after_marking_survives_the_sweep(tmp_path: Path, rng: random.Random) -> None:
    data = rng.randbytes(900)
    store = small_store(str(tmp_path / "s"))
    store.delete_run(log_run(store, {"a.txt": data}))
    age(tmp_path / "s")
    assert collect_garbage(store.backend, grace=0).marked["chunks"] == 1
    # a writer stores it again and has not bound it yet: the chunk that is the file was freshened
    written = store.objects.chunks_written
    store.objects.put_bytes(data)
    assert store.objects.chunks_written == written
    second = collect_garbage(store.backend, grace=0)
    assert second.deleted_total == 0 and second.kept_fresh == 1
    reborn = log_run(store, {"again.txt": data})
    assert store.objects.get_bytes(store.get_run(reborn).artifacts["again.txt"].digest) == data
    assert verify_store(store).ok


def test_gc_of_a_version_1_store(tmp_path: Path, rng: random.Random) -> None:
    root = tmp_path / "s"
    LocalBackend(root).put_if_absent("casstore.json", StoreConfig(version=1, chunker=SMALL).to_json())
    store = small_store(str(root))
    assert store.objects.layout.recipe_for_one_chunk
    keep = log_run(store, {"k.txt": rng.randbytes(900), "big.bin": rng.randbytes(30_000)})
    store.delete_run(log_run(store, {"g.txt": rng.randbytes(800), "big2.bin": rng.randbytes(30_000)}))
    age(root)
    collect_garbage(store.backend, grace=0)
    second = collect_garbage(store.backend, grace=0)
    assert second.deleted["files"] == 2 and second.deleted["chunks"] > 1
    assert content(store) == needed(store, [keep])
    assert all(len(k.split("/")) == 4 for k in store.backend.list("chunks/"))
    assert all(len(k.split("/")) == 4 for k in store.backend.list("files/"))
    assert verify_store(store).ok


# ---- the backend primitives gc relies on ------------------------------------------------------


@pytest.fixture(params=["local", "memory"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> LocalBackend | MemoryBackend:
    if request.param == "local":
        return LocalBackend(tmp_path / "b")
    return MemoryBackend(f"gc-prims-{time.time_ns()}")


def test_delete_if_stale_keeps_what_was_touched_after_the_threshold(backend: LocalBackend | MemoryBackend) -> None:
    backend.put_blob("chunks/aa/bb/x", b"data")
    backend.put_blob("chunks/aa/bb/y", b"data")
    time.sleep(0.02)
    threshold = backend.info("chunks/aa/bb/x").mtime + 0.01
    assert backend.touch("chunks/aa/bb/y")
    assert backend.delete_if_stale("chunks/aa/bb/x", threshold)
    assert not backend.exists("chunks/aa/bb/x")
    assert not backend.delete_if_stale("chunks/aa/bb/y", threshold)
    assert backend.get("chunks/aa/bb/y") == b"data"
    assert not backend.delete_if_stale("chunks/aa/bb/missing", threshold)
    assert backend.exact_stale_delete


def test_touch_reports_a_deleted_object_and_put_blob_writes_it_again(backend: LocalBackend | MemoryBackend) -> None:
    backend.put_blob("files/aa/bb/r", b"recipe")
    assert backend.delete_if_stale("files/aa/bb/r", time.time() + 60)
    assert backend.touch("files/aa/bb/r") is False
    assert backend.put_blob("files/aa/bb/r", b"recipe") is True
    assert backend.get("files/aa/bb/r") == b"recipe"


def test_an_interrupted_stale_delete_is_settled_by_the_next_gc(tmp_path: Path) -> None:
    """A gc killed between renaming an object aside and deciding leaves a quarantine file;
    clean_tmp puts a fresh object back and removes a stale one."""
    b = LocalBackend(tmp_path / "b")
    b.put_blob("chunks/aa/bb/fresh", b"1")
    b.put_blob("chunks/aa/bb/stale", b"2")
    d = tmp_path / "b" / "chunks" / "aa" / "bb"
    threshold = time.time() - 100
    past = threshold - 100
    os.utime(d / "stale", (past, past))
    for name in ("fresh", "stale"):  # what delete_if_stale does before it decides
        os.rename(d / name, d / f".tmp-gcq-{int(threshold * 1e9)}-deadbeef-{name}")
    assert not b.exists("chunks/aa/bb/fresh")
    assert b.clean_tmp(older_than=time.time() - 3600) == 2
    assert b.get("chunks/aa/bb/fresh") == b"1"
    assert not b.exists("chunks/aa/bb/stale")
    assert not [p for p in d.iterdir() if p.name.startswith(".tmp-")]


def test_gc_on_a_memory_store(rng: random.Random) -> None:
    url = f"memory://gc-{time.time_ns()}"
    store = small_store(url)
    keep = log_run(store, {"a.bin": rng.randbytes(20_000)})
    gone = log_run(store, {"b.bin": rng.randbytes(20_000)})
    store.delete_run(gone)
    time.sleep(0.05)
    collect_garbage(store.backend, grace=0, slack=0)
    collect_garbage(store.backend, grace=0, slack=0)
    # a second handle on the same memory store sees the same objects and times
    other = small_store(url)
    assert content(other)["files"] == needed(other, [keep])["files"]
    assert verify_store(other).ok


def test_gc_on_s3_removes_exactly_the_unreferenced_objects(s3_url: str, rng: random.Random) -> None:
    """Loose chunks, counted object by object (packs on S3: tests/test_packs.py)."""
    store = RunStore(open_store(s3_url, chunker=SMALL, layout="loose"))
    keep = log_run(store, {"a.bin": rng.randbytes(20_000), "shared.bin": b"s" * 5000})
    gone = log_run(store, {"b.bin": rng.randbytes(20_000), "shared.bin": b"s" * 5000})
    store.delete_run(gone)
    time.sleep(1.1)  # S3 keeps whole seconds
    collect_garbage(store.backend, grace=0, slack=0)
    r = collect_garbage(store.backend, grace=0, slack=0)
    assert r.deleted["files"] == 1 and not r.exact
    left = content(store)
    want = needed(store, [keep])
    assert left["files"] == want["files"] and left["chunks"] == want["chunks"]
    assert verify_store(store).ok


def test_gc_drops_the_hints_of_the_files_it_collects(tmp_path: Path, rng: random.Random) -> None:
    """A large file leaves a hint (``hints/<first chunk>/<size>-<file>``) by which its next
    version finds its recipe; once gc has taken the file, its hint goes too."""
    store = small_store(str(tmp_path / "s"))
    kept, dropped = rng.randbytes(9 << 20), rng.randbytes(9 << 20)
    log_run(store, {"kept.bin": kept})
    gone = log_run(store, {"dropped.bin": dropped})

    def hinted() -> set[str]:
        return {h[2] for k in store.backend.list("hints/") if (h := store.objects.layout.parse_hint(k))}

    assert hinted() == {blake3(kept).hexdigest(), blake3(dropped).hexdigest()}
    store.delete_run(gone, "test")
    age(tmp_path / "s")
    collect_garbage(store.backend, grace=0)
    assert len(hinted()) == 2  # marked, not deleted
    collect_garbage(store.backend, grace=0)
    assert hinted() == {blake3(kept).hexdigest()}
    assert verify_store(store).ok
