"""Small artifacts in a version-3 store: held in their own binding record (kind ``inline``),
one object per artifact, verified on every read, immutable like any artifact; a model's
files never are, and older stores keep storing them as files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from blake3 import blake3

import casstore
from casstore.backend import LocalBackend
from casstore.exceptions import CorruptRecordError, DamagedRunWarning, ImmutableArtifactError, IntegrityError, InvalidInputError, LocalFileError, ObjectNotFoundError
from casstore.maintenance.du import disk_usage
from casstore.maintenance.gc import collect_garbage
from casstore.maintenance.verify import verify_store
from casstore.objects import StoreConfig, open_store
from casstore.objects.codec import unpack
from casstore.objects.config import CONFIG_KEY
from casstore.objects.layout import INLINE_MAX
from casstore.runs import RunStore, layout
from casstore.tracking.uri import get_store

from tracking_helpers import corrupt_artifact, tracking  # noqa: F401  (fixture)


def objects_under(root: Path, top: str) -> list[Path]:
    return [p for p in (root / top).rglob("*") if p.is_file() and not p.name.startswith(".")] if (root / top).exists() else []


def test_log_artifacts_of_small_files_writes_one_object_each(tracking: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    files = {f"f{i}.txt": f"file {i}\n".encode() * (i + 1) for i in range(5)}
    files["sub/empty.txt"] = b""
    files["sub/edge.bin"] = os.urandom(INLINE_MAX)
    for rel, data in files.items():
        (src / rel).write_bytes(data)
    with casstore.start_run() as run:
        casstore.log_artifacts(str(src), "data")
    root = Path(tracking)
    store = get_store()
    view = store.get_run(run.info.run_id)
    assert {p: e.kind for p, e in view.artifacts.items()} == {f"data/{rel}": "inline" for rel in files}
    assert objects_under(root, "chunks") == [] and objects_under(root, "files") == [], "no content object"
    records = objects_under(root, f"runs/{run.info.run_id}/artifacts")
    assert len(records) == len(files), "one record per artifact, holding it"
    listed = {f.path: f for f in casstore.MlflowClient().list_artifacts(run.info.run_id, "data/sub")}
    assert listed["data/sub/edge.bin"].file_size == INLINE_MAX
    assert listed["data/sub/edge.bin"].digest == blake3(files["sub/edge.bin"]).hexdigest()
    for rel, data in files.items():
        assert store.artifact_bytes(run.info.run_id, view.artifacts[f"data/{rel}"]) == data
    assert casstore.artifacts.load_text(f"runs:/{run.info.run_id}/data/f3.txt") == files["f3.txt"].decode()
    got = Path(casstore.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="data", dst_path=tmp_path / "dl"))
    assert {p.relative_to(got).as_posix(): p.read_bytes() for p in got.rglob("*") if p.is_file()} == files
    assert verify_store(store).ok


def test_one_byte_over_the_limit_is_a_file_of_the_store(tracking: str) -> None:
    with casstore.start_run() as run:
        casstore.log_text("x" * INLINE_MAX, "at.txt")
        casstore.log_text("x" * (INLINE_MAX + 1), "over.txt")
    store = get_store()
    view = store.get_run(run.info.run_id)
    assert view.artifacts["at.txt"].inline and not view.artifacts["over.txt"].inline
    assert store.objects.has_file(view.artifacts["over.txt"].digest)
    assert not store.objects.has_file(view.artifacts["at.txt"].digest)
    assert casstore.artifacts.load_text(f"runs:/{run.info.run_id}/over.txt") == "x" * (INLINE_MAX + 1)


def test_the_seal_pins_inline_artifacts_and_reads_check_them(tracking: str, tmp_path: Path) -> None:
    with casstore.start_run() as run:
        casstore.log_dict({"lr": 0.1}, "config.json")
    store = get_store()
    run_id = run.info.run_id
    man = store.read_manifest(run_id, run.info.digest if run.info.digest else store.get_run(run_id).digest)
    entry = man["artifacts"]["config.json"]
    assert entry["kind"] == "inline" and entry["digest"] == blake3(json.dumps({"lr": 0.1}, indent=2).encode()).hexdigest()
    assert casstore.artifacts.load_dict(f"runs:/{run_id}/config.json") == {"lr": 0.1}
    # a record rewritten whole, content, digest and its own check alike, still disagrees with
    # the sealed manifest
    key = Path(tracking) / layout.artifact_key(run_id, "config.json")
    rec = unpack(key.read_bytes())
    rec.pop("b3")
    forged = b'{"lr": 9.9}'
    from casstore.objects.codec import pack_checked

    key.write_bytes(pack_checked({**rec, "data": forged, "digest": blake3(forged).hexdigest(), "size": len(forged)}))
    with pytest.raises(IntegrityError) as caught:
        casstore.artifacts.load_dict(f"runs:/{run_id}/config.json")
    assert caught.value.expected == entry["digest"] and caught.value.actual == blake3(forged).hexdigest()
    with pytest.raises(IntegrityError):
        casstore.artifacts.download_artifacts(run_id=run_id, dst_path=tmp_path / "dl")
    assert not [p for p in (tmp_path / "dl").rglob("*") if p.is_file()], "nothing unverified was written"
    key.unlink()
    with pytest.raises(ObjectNotFoundError, match="casstore verify"):
        casstore.artifacts.load_dict(f"runs:/{run_id}/config.json")


def test_a_flipped_byte_in_an_open_runs_inline_artifact_is_caught(tracking: str) -> None:
    run = casstore.start_run()
    casstore.log_text("the data of an open run", "open.txt")
    casstore.log_text("a sibling", "sibling.txt")
    corrupt_artifact(get_store(), run.info.run_id, "open.txt", at=4)
    # the record checks itself: the damage is found before its content is used, and
    # costs that artifact only
    with pytest.warns(DamagedRunWarning), pytest.raises(CorruptRecordError, match="open.txt.*BLAKE3 check"):
        casstore.artifacts.load_text(f"runs:/{run.info.run_id}/open.txt")
    with pytest.warns(DamagedRunWarning):
        assert casstore.artifacts.load_text(f"runs:/{run.info.run_id}/sibling.txt") == "a sibling"
    casstore.end_run()


def test_inline_artifacts_are_immutable(tracking: str) -> None:
    with casstore.start_run() as run:
        first = casstore.MlflowClient().store.open_run(run.info.run_id).log_bytes("notes.txt", b"first")
        casstore.log_text("first", "notes.txt")  # the same content again: a no-op
        with pytest.raises(ImmutableArtifactError) as caught:
            casstore.log_text("second", "notes.txt")
    assert first.inline
    assert blake3(b"first").hexdigest() in str(caught.value) and blake3(b"second").hexdigest() in str(caught.value)
    assert casstore.artifacts.load_text(f"runs:/{run.info.run_id}/notes.txt") == "first"


def test_a_models_files_are_files_of_the_store(tracking: str) -> None:
    pytest.importorskip("sklearn")
    import casstore.sklearn
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    with casstore.start_run() as run:
        info = casstore.sklearn.log_model(model, name="clf")
    store = get_store()
    view = store.get_run(run.info.run_id)
    model_files = {p: e for p, e in view.artifacts.items() if p.startswith("clf/")}
    assert model_files and all(not e.inline for e in model_files.values()), "a model entry names its files by digest"
    assert casstore.sklearn.load_model(f"cas:{info.model_digest}").predict([[3.0]]).tolist() == [1]
    # an entry naming an artifact held in a run record is refused: it could not be loaded by digest
    h = store.create_run(store.get_or_create_experiment("Default"))
    held = h.log_bytes("weights.bin", b"small weights")
    assert held.inline
    with pytest.raises(InvalidInputError, match="inline=False"):
        h.add_model("m", {"v": 1, "kind": "model", "files": {"weights.bin": {"digest": held.digest, "size": held.size}}})


def test_an_older_store_keeps_small_artifacts_as_files(tmp_path: Path) -> None:
    root = tmp_path / "v2"
    LocalBackend(root).put_if_absent(CONFIG_KEY, StoreConfig(version=2).to_json())
    store = RunStore(open_store(str(root)))
    assert store.objects.layout.inline_max == 0
    h = store.create_run(store.get_or_create_experiment("old"))
    entry = h.log_bytes("notes.txt", b"small")
    h.end()
    assert not entry.inline and store.objects.has_file(entry.digest)


def test_gc_and_du_with_inline_artifacts(tmp_path: Path) -> None:
    store = RunStore(open_store(str(tmp_path / "s")))
    exp = store.get_or_create_experiment("gc")
    keep = store.create_run(exp)
    keep.log_bytes("small.txt", b"kept small")
    keep.log_bytes("big.bin", os.urandom(INLINE_MAX + 10))
    keep.end()
    gone = store.create_run(exp)
    gone.log_bytes("small.txt", b"gone small")
    gone.end()
    store.delete_run(gone.run_id)
    for _ in range(2):
        collect_garbage(store.backend, grace=0)
    view = store.get_run(keep.run_id)
    assert store.artifact_bytes(keep.run_id, view.artifacts["small.txt"]) == b"kept small"
    assert verify_store(store).ok
    r = disk_usage(store)
    (usage,) = r.runs
    assert usage.files == 2 and usage.logical == len(b"kept small") + INLINE_MAX + 10
    assert usage.unique == usage.logical and usage.exclusive == INLINE_MAX + 10, "a run's records stay when it is deleted"
    assert r.store["inline_bytes"] == len(b"kept small")
    assert r.total.physical == r.store["stored_bytes"] + len(b"kept small")


def test_diff_of_a_changed_inline_artifact_reports_no_chunks_and_no_error(tmp_path: Path) -> None:
    from casstore.cli.audit import build_diff

    store = RunStore(open_store(str(tmp_path / "s")))
    exp = store.get_or_create_experiment("diff")
    ids = []
    for text in (b"threshold: 0.5\n", b"threshold: 0.7\n"):
        h = store.create_run(exp)
        h.log_bytes("config.yaml", text)
        h.end()
        ids.append(h.run_id)
    d = build_diff(store, *ids)
    ch = d["artifacts"]["changed"]["config.yaml"]
    assert ch["a"]["digest"] == blake3(b"threshold: 0.5\n").hexdigest()
    assert ch["shared_chunks"] is None and "error" not in ch


def test_many_small_files_are_read_again_past_the_memory_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small files' content is held between reading and binding only up to a bound; past
    it, a file is read again when it is bound, and refused if it changed meanwhile."""
    import casstore.runs.handle as handle_mod

    monkeypatch.setattr(handle_mod, "INLINE_HELD_MAX", 100)
    src = tmp_path / "src"
    src.mkdir()
    files = {f"f{i}.txt": f"content of file {i}\n".encode() * 3 for i in range(6)}  # 60+ bytes each
    for name, data in files.items():
        (src / name).write_bytes(data)
    store = RunStore(open_store(str(tmp_path / "s")))
    h = store.create_run(store.get_or_create_experiment("bound"))
    entries = h.log_files([(name, str(src / name)) for name in files])
    assert all(e.inline for e in entries)
    view = store.get_run(h.run_id)
    assert {p: store.artifact_bytes(h.run_id, e) for p, e in view.artifacts.items()} == files

    # a file written between its hashing and its binding is refused, not bound to other bytes
    h2 = store.create_run(store.get_or_create_experiment("bound"))
    real_flush = store.objects.flush

    def flush_then_write() -> None:
        real_flush()
        (src / "f5.txt").write_bytes(b"changed after it was hashed\n")

    monkeypatch.setattr(store.objects, "flush", flush_then_write)
    with pytest.raises(LocalFileError, match="changed while it was being logged"):
        h2.log_files([(name, str(src / name)) for name in files])
    assert "f5.txt" not in store.get_run(h2.run_id).artifacts
