"""The runs layer: experiments, immutable bindings, metric batches, the seal and its verification."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from blake3 import blake3

from casstore.exceptions import (
    DamagedRunWarning,
    ArtifactPathConflictError,
    CorruptRecordError,
    ImmutableArtifactError,
    IntegrityError,
    InvalidInputError,
    LocalFileError,
    ObjectNotFoundError,
    RunStateError,
    UnsafePathError,
)
from casstore.objects import open_store
from casstore.objects.codec import pack
from casstore.runs import RunStore, open_run_store
from casstore.runs import layout
from casstore.runs.store import RunStore as _RunStore

from layouts import LAYOUTS
from tracking_helpers import old_store, write


@pytest.fixture(params=[f"{kind}-{layout}" for kind in ("local", "memory") for layout in LAYOUTS] + ["local-v3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunStore]:
    """A new store of each content layout; ``local-v3``: of format version 3 (one record per
    param and tag, loose chunks)."""
    kind, _, layout = request.param.partition("-")
    if request.param == "local-v3":
        yield open_run_store(old_store(tmp_path / "store"))
    elif kind == "local":
        yield RunStore(open_store(tmp_path / "store", layout=layout))
    else:
        url = f"memory://runs-test-{os.getpid()}-{id(request)}"
        s = RunStore(open_store(url, layout=layout))
        yield s
        for k in list(s.backend.list()):
            s.backend.delete(k)


def test_experiments_are_created_once_per_name(store: RunStore) -> None:
    a = store.get_or_create_experiment("exp")
    assert store.get_or_create_experiment("exp") == a
    assert store.get_or_create_experiment("Default") == "0"
    with pytest.raises(InvalidInputError, match="already exists"):
        store.create_experiment("exp")
    b = store.create_experiment("other", tags={"team": "ml"})
    assert store.get_experiment(b).tags == {"team": "ml"}
    assert store.get_experiment_by_name("exp").experiment_id == a  # type: ignore[union-attr]
    assert store.get_experiment_by_name("missing") is None
    assert {e.name for e in store.list_experiments()} == {"exp", "Default", "other"}
    with pytest.raises(ObjectNotFoundError):
        store.get_experiment("12345")
    with pytest.raises(InvalidInputError):
        store.get_experiment("../x")


def test_default_experiment_is_visible_on_a_fresh_store_without_writing_anything(store: RunStore) -> None:
    before = sorted(store.backend.list())
    default = store.get_experiment("0")
    assert (default.experiment_id, default.name) == ("0", "Default")
    assert default.creation_time == int(store.objects.config.created * 1000)
    assert store.get_experiment_by_name("Default") == default
    assert store.list_experiments() == [default]
    assert sorted(store.backend.list()) == before  # a read-only store can show it too
    with pytest.raises(InvalidInputError, match="'Default' already exists"):
        store.create_experiment("Default")
    store.create_run("0")  # writes Default's records: what reads showed stays the same
    assert store.get_experiment("0") == default and store.list_experiments() == [default]
    assert store.backend.exists(layout.experiment_meta_key("0"))


def _second_writer(store: RunStore) -> RunStore:
    """The same store and run opened afresh, as another process would (no claims shared)."""
    other = open_run_store(store.url)
    assert other is not store
    return other


def test_another_writer_sees_a_directory_made_by_a_file_under_it(store: RunStore, tmp_path: Path) -> None:
    h = store.create_run("0")
    h.log_bytes("model/weights.txt", b"w")
    h.log_bytes("ds/0/x.txt", b"x")
    other = _second_writer(store).open_run(h.run_id)
    with pytest.raises(ArtifactPathConflictError, match="'model' is already a directory .*it holds 'model/weights.txt'"):
        other.log_bytes("model", b"file")
    with pytest.raises(ArtifactPathConflictError, match="'ds/0' is already a directory"):
        other.bind_artifact("ds/0", h.log_bytes("big.bin", os.urandom(20_000)).digest, 20_000)
    for n in (20, 40):  # a large batch lists the markers once: hashes its paths, or reads few markers
        many = [(f"f{i}", str(write(tmp_path / f"f{i}", str(i)))) for i in range(n)] + [("ds", str(tmp_path / "f0"))]
        with pytest.raises(ArtifactPathConflictError, match="'ds' is already a directory"):
            other.log_files(many)
    assert sorted(store.get_run(h.run_id).artifacts) == ["big.bin", "ds/0/x.txt", "model/weights.txt"]


def test_another_writer_sees_a_file_that_a_new_path_would_lie_under(store: RunStore, tmp_path: Path) -> None:
    h = store.create_run("0")
    h.log_bytes("notes", b"n")
    other = _second_writer(store).open_run(h.run_id)
    with pytest.raises(ArtifactPathConflictError, match="'notes' is already a file of that run"):
        other.log_bytes("notes/more/deep.txt", b"x")
    with pytest.raises(ArtifactPathConflictError, match="'notes' is already a file"):
        other.log_files([("notes/a.txt", str(write(tmp_path / "a.txt", "a")))])
    assert not list(store.backend.list(layout.dirs_prefix(h.run_id)))  # refused before any marker
    other.log_bytes("notes", b"n")  # the same content again is still a no-op
    assert sorted(store.get_run(h.run_id).artifacts) == ["notes"]


def test_a_batch_that_is_both_a_file_and_a_directory_is_refused_whole(store: RunStore, tmp_path: Path) -> None:
    h = store.create_run("0")
    a = str(write(tmp_path / "a", "a"))
    with pytest.raises(ArtifactPathConflictError, match="'out' is already a file"):
        h.log_files([("out", a), ("ok.txt", a), ("out/x", a)])
    assert store.get_run(h.run_id).artifacts == {}
    h.log_files([("out/x", a), ("out/y/z", a)])
    assert sorted(store.get_run(h.run_id).artifacts) == ["out/x", "out/y/z"]


def test_param_bound_once(store: RunStore) -> None:
    h = store.create_run("0")
    h.log_param("lr", "0.1")
    h.log_param("lr", "0.1")  # the same value again: no-op
    with pytest.raises(ImmutableArtifactError, match="param 'lr'") as e:
        h.log_param("lr", "0.2")
    assert (e.value.existing, e.value.new) == ("0.1", "0.2")
    assert store.get_run(h.run_id).params == {"lr": "0.1"}


@pytest.mark.parametrize("bad", ["", "a..b/../c", "/abs", "x" * 300, "bad\nkey", "a//b"])
def test_bad_keys_are_refused(store: RunStore, bad: str) -> None:
    h = store.create_run("0")
    with pytest.raises(InvalidInputError):
        h.log_param(bad, "1")
    with pytest.raises(InvalidInputError):
        h.log_metric(bad, 1.0)


def test_artifact_bound_once_names_path_and_both_digests(store: RunStore, tmp_path: Path) -> None:
    h = store.create_run("0")
    first = h.log_bytes("model/w.bin", b"one")
    assert first.digest == blake3(b"one").hexdigest() and first.size == 3
    again = h.log_file("model/w.bin", write(tmp_path / "same.bin", b"one"))
    assert again == first  # identical content: no-op returning the existing entry
    with pytest.raises(ImmutableArtifactError) as e:
        h.log_bytes("./model//w.bin", b"two")
    msg = str(e.value)
    assert "model/w.bin" in msg and first.digest in msg and blake3(b"two").hexdigest() in msg
    assert store.get_run(h.run_id).artifacts["model/w.bin"].digest == first.digest


def test_bind_artifact_checks_the_content_exists(store: RunStore) -> None:
    h = store.create_run("0")
    stored = store.objects.put_bytes(b"payload")
    entry = h.bind_artifact("p.bin", stored.digest, stored.size)
    assert entry.digest == stored.digest
    with pytest.raises(ObjectNotFoundError, match="store it first"):
        h.bind_artifact("q.bin", blake3(b"absent").hexdigest(), 6)
    with pytest.raises(InvalidInputError, match="bytes"):
        h.bind_artifact("r.bin", stored.digest, 99)


@pytest.mark.parametrize("bad", ["../escape", "/etc/passwd", "a/../../b", "C:/x", ""])
def test_unsafe_artifact_paths_are_refused_and_nothing_is_written(store: RunStore, bad: str) -> None:
    h = store.create_run("0")
    with pytest.raises(UnsafePathError):
        h.log_bytes(bad, b"x")
    assert store.get_run(h.run_id).artifacts == {}


def test_log_files_binds_a_batch_with_one_barrier(store: RunStore, tmp_path: Path) -> None:
    files = [(f"d/f{i}.txt", str(write(tmp_path / f"f{i}.txt", f"content {i}"))) for i in range(40)]
    h = store.create_run("0")
    calls = []
    real_flush = store.backend.flush
    store.backend.flush = lambda: (calls.append(1), real_flush())[1]  # type: ignore[method-assign]
    try:
        entries = h.log_files(files)
    finally:
        store.backend.flush = real_flush  # type: ignore[method-assign]
    assert len(calls) == 1
    assert [e.path for e in entries] == [p for p, _ in files]
    view = store.get_run(h.run_id)
    for p, local in files:
        assert store.artifact_bytes(h.run_id, view.artifacts[p]) == Path(local).read_bytes()


def test_log_files_uses_threads_on_a_local_disk_only_for_large_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import casstore.runs.handle as handle_module

    pools: list[int] = []
    real_pool = handle_module.ThreadPoolExecutor

    def counting_pool(workers: int, **kw: object) -> object:
        pools.append(workers)
        return real_pool(workers, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(handle_module, "ThreadPoolExecutor", counting_pool)
    store = open_run_store(tmp_path / "store")
    h = store.create_run("0")
    small = [(f"s/{i}.txt", str(write(tmp_path / f"s{i}.txt", f"small {i}"))) for i in range(20)]
    h.log_files(small)
    assert pools == [], "small files on a local disk are stored by the calling thread"
    big = [(f"b/{i}.bin", str(tmp_path / f"b{i}.bin")) for i in range(8)]
    for i, (_, p) in enumerate(big):
        Path(p).write_bytes(os.urandom(300_000) + bytes([i]))
    h.log_files(big)
    assert pools == [store.io_workers]
    h.log_files(small + [("x.txt", small[0][1])], workers=2)  # an explicit number is kept
    assert pools[-1] == 2


def test_log_files_binds_nothing_if_a_file_is_missing(store: RunStore, tmp_path: Path) -> None:
    h = store.create_run("0")
    items = [("a.txt", str(write(tmp_path / "a.txt", "a"))), ("b.txt", str(tmp_path / "missing.txt"))]
    with pytest.raises(LocalFileError, match="no such file"):
        h.log_files(items)
    assert store.get_run(h.run_id).artifacts == {}
    with pytest.raises(LocalFileError, match="directory"):
        h.log_file("d", tmp_path)


def test_large_file_goes_through_chunking(store: RunStore, tmp_path: Path) -> None:
    data = os.urandom(9 << 20)  # over twice the largest chunk: at least three chunks, whatever the cuts
    h = store.create_run("0")
    e = h.log_file("big.bin", write(tmp_path / "big.bin", data))
    assert e.digest == blake3(data).hexdigest()
    assert len(store.objects.recipe(e.digest).chunks) > 1


def test_metrics_are_written_in_batches(tmp_path: Path) -> None:
    store = _RunStore(open_run_store(old_store(tmp_path / "s")).objects, metric_flush_points=100)
    h = store.create_run("0")
    for i in range(250):
        h.log_metric("loss", 1.0 / (i + 1), step=i, timestamp_ms=1000 + i)
    segments = [k for k in store.backend.list(layout.metrics_prefix(h.run_id))]
    assert len(segments) == 2  # 200 points written in two objects, 50 still buffered
    h.end()
    assert len(list(store.backend.list(layout.metrics_prefix(h.run_id)))) == 3
    view = store.get_run(h.run_id)
    hist = view.metric_history("loss")
    assert len(hist) == 250 and hist[0] == (1.0, 0, 1000) and view.metrics["loss"] == 1.0 / 250


def test_latest_metric_is_the_greatest_step(store: RunStore) -> None:
    h = store.create_run("0")
    h.log_metric("m", 5.0, step=3, timestamp_ms=10)
    h.log_metric("m", 7.0, step=1, timestamp_ms=20)
    h.log_metric("m", 6.0, step=3, timestamp_ms=15)
    assert store.get_run(h.run_id).metrics["m"] == 6.0
    with pytest.raises(InvalidInputError, match="number"):
        h.log_metric("m", "high")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="step"):
        h.log_metric("m", 1.0, step=1.5)  # type: ignore[arg-type]


def test_get_run_sees_metrics_still_buffered(store: RunStore) -> None:
    h = store.create_run("0")
    h.log_metric("acc", 0.5)
    assert store.get_run(h.run_id).metrics == {"acc": 0.5}


def test_tags_latest_value_wins_while_open(store: RunStore) -> None:
    h = store.create_run("0", tags={"stage": "a"})
    h.set_tag("stage", "b")
    h.set_tag("stage", "c")
    assert store.get_run(h.run_id).tags["stage"] == "c"
    h.end()
    assert store.get_run(h.run_id).tags["stage"] == "c"


def test_seal_pins_everything_and_refuses_more(store: RunStore) -> None:
    h = store.create_run("0", run_name="r")
    h.log_param("p", "1")
    h.log_bytes("a.txt", b"a")
    h.log_metric("m", 1.0)
    model_digest = h.add_model("mdl", {"flavors": {"x": {"v": 1}}, "files": {}})
    digest = h.end()
    assert h.end() == digest  # idempotent
    seal = store.seal_record(h.run_id)
    assert seal is not None and seal["digest"] == digest and seal["status"] == "FINISHED"
    # held in the seal (version 4), or an object of its own
    manifest = seal["manifest"] if store.batched else store.backend.get(layout.manifest_key(h.run_id, digest))
    assert blake3(manifest).hexdigest() == digest
    view = store.get_run(h.run_id)
    assert (view.sealed, view.digest, view.status, view.run_name) == (True, digest, "FINISHED", "r")
    assert view.models["mdl"].digest == model_digest and view.end_time is not None
    for write_op in (lambda: h.log_param("q", "1"), lambda: h.log_bytes("b", b"b"), lambda: h.set_tag("t", "1"),
                     lambda: h.log_metric("m", 2.0), lambda: h.add_model("m2", {})):
        with pytest.raises(RunStateError, match="sealed"):
            write_op()
    with pytest.raises(RunStateError, match="sealed"):
        store.open_run(h.run_id)
    # the first seal wins: another handle ending the run gets the same digest
    assert store.get_run(h.run_id).digest == digest


def test_end_with_a_bad_status_is_refused(store: RunStore) -> None:
    h = store.create_run("0")
    with pytest.raises(InvalidInputError, match="status"):
        h.end("DONE")
    assert h.end("FAILED") and store.get_run(h.run_id).status == "FAILED"


def _replace(store: RunStore, key: str, data: bytes) -> None:
    """Tamper with a stored object, as an attacker or a bad disk would."""
    store.backend.delete(key)
    store.backend.put_blob(key, data)


def test_tampered_manifest_is_detected(store: RunStore) -> None:
    h = store.create_run("0")
    h.log_param("p", "1")
    digest = h.end()
    if store.batched:  # the manifest is in the seal, which checks itself
        seal = store.backend.get(layout.seal_key(h.run_id))
        # the seal's own status, after the manifest (keys are sorted): the manifest's bytes are intact
        at = seal.rindex(b"FINISHED")
        _replace(store, layout.seal_key(h.run_id), seal[:at] + b"FINISHEX" + seal[at + 8:])
        with pytest.raises(CorruptRecordError, match="does not match its own BLAKE3"):
            store.seal_record(h.run_id)
        # the run is shown from the manifest the seal holds, which still hashes to the digest beside it (a
        # version-4 store has the manifest object beside the seal too), and says the seal failed
        with pytest.warns(DamagedRunWarning, match="does not match its own BLAKE3"):
            view = store.get_run(h.run_id)
        assert view.params == {"p": "1"} and view.status == "FINISHED" and view.digest == digest
        assert [d.key for d in view.damaged] == [layout.seal_key(h.run_id)]
        if not store.manifest_objects:  # damage in the manifest itself: the run cannot be shown, and says why
            _replace(store, layout.seal_key(h.run_id), seal.replace(b"FINISHED", b"FINISHEX"))
            with pytest.raises(CorruptRecordError, match="only record.*Restore"):
                store.get_run(h.run_id)
        return
    key = layout.manifest_key(h.run_id, digest)
    data = bytearray(store.backend.get(key))
    data[-1] ^= 1
    _replace(store, key, bytes(data))
    with pytest.raises(IntegrityError, match=digest):
        store.read_manifest(h.run_id, digest)
    # the run is shown from its own records (each checks itself), and says the manifest failed
    with pytest.warns(DamagedRunWarning, match=key):
        view = store.get_run(h.run_id)
    assert view.params == {"p": "1"} and view.status == "FINISHED" and view.sealed
    assert [d.key for d in view.damaged] == [key] and digest in view.damaged[0].detail


def test_tampered_model_entry_is_detected(store: RunStore) -> None:
    h = store.create_run("0")
    d = h.add_model("m", {"flavors": {"sklearn": {}}})
    assert store.load_model_entry(d) == {"flavors": {"sklearn": {}}}
    _replace(store, store.objects.layout.model_key(d), pack({"flavors": {"evil": {}}}))
    with pytest.raises(IntegrityError):
        store.load_model_entry(d)
    with pytest.raises(ImmutableArtifactError, match="model 'm'"):
        h.add_model("m", {"flavors": {"other": {}}})


def test_forged_record_with_an_unsafe_path_is_refused(store: RunStore) -> None:
    h = store.create_run("0")
    stored = store.objects.put_bytes(b"x")
    evil = {"v": 1, "path": "../../etc/passwd", "kind": "file", "digest": stored.digest, "size": 1, "logged_at": 0}
    key = layout.artifact_key(h.run_id, "../../etc/passwd")
    store.backend.put_if_absent(key, pack(evil))
    h.log_bytes("fine.txt", b"fine")
    with pytest.warns(DamagedRunWarning, match="unsafe path"):
        view = store.get_run(h.run_id)
    assert list(view.artifacts) == ["fine.txt"] and [d.key for d in view.damaged] == [key]


def test_record_under_the_wrong_key_is_refused(store: RunStore) -> None:
    h = store.create_run("0")
    stored = store.objects.put_bytes(b"x")
    rec = {"v": 1, "path": "a.txt", "kind": "file", "digest": stored.digest, "size": 1, "logged_at": 0}
    store.backend.put_if_absent(layout.artifact_key(h.run_id, "b.txt"), pack(rec))
    with pytest.warns(DamagedRunWarning, match="does not belong"):
        view = store.get_run(h.run_id)
    assert not view.artifacts and view.artifact_damage("b.txt") is not None


def test_delete_is_recorded_and_stops_writes(store: RunStore) -> None:
    h = store.create_run("0")
    store.delete_run(h.run_id, reason="bad data")
    store.delete_run(h.run_id)  # twice: no-op
    assert store.is_deleted(h.run_id) and store.get_run(h.run_id).deleted
    with pytest.raises(RunStateError, match="deleted"):
        h.log_param("p", "1")
    assert store.search_runs(["0"]) == []
    assert [v.run_id for v in store.search_runs(["0"], deleted=True)] == [h.run_id]


def test_runs_are_listed_per_experiment(store: RunStore) -> None:
    e = store.get_or_create_experiment("e")
    a = store.create_run(e).run_id
    b = store.create_run("0").run_id
    assert store.list_run_ids(e) == [a]
    assert set(store.list_run_ids()) == {a, b}
    with pytest.raises(ObjectNotFoundError):
        store.create_run("ffffffffffffffffffffffffffffffff")
    with pytest.raises(ObjectNotFoundError):
        store.get_run("0" * 32)
    with pytest.raises(InvalidInputError, match="not a run id"):
        store.get_run("../../x")


def _child_exits(store_path: str, run_id: str) -> None:
    store = open_run_store(store_path)
    h = store.open_run(run_id)
    h.log_metric("child", 1.0)
    # exits normally: buffered points of the child are written at exit


def test_forked_child_does_not_rewrite_the_parents_buffer(tmp_path: Path) -> None:
    store = open_run_store(tmp_path / "s")
    h = store.create_run("0")
    h.log_metric("parent", 1.0)  # buffered in the parent
    ctx = multiprocessing.get_context("fork")
    p = ctx.Process(target=_child_exits, args=(str(tmp_path / "s"), h.run_id))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    h.end()
    keys = [k for k, *_ in store.get_run(h.run_id).points]
    assert sorted(keys) == ["child", "parent"]


def test_a_write_racing_the_seal_is_refused_not_lost(store: RunStore) -> None:
    a = store.create_run("0")
    store.open_run(a.run_id).end()  # another writer seals the run...
    a._check_open = lambda also=(): {}  # type: ignore[method-assign,misc]  # ...after a's check, before its write
    # version 4: the closing batch fences params and tags before they are written
    fenced = "ended and sealed" if store.batched else "seal does not include"
    with pytest.raises(RunStateError, match=fenced):
        a.log_param("late", "1")
    # its record is bound outside the batches: refused when the batch listing it finds the run
    # sealed, or when the record is checked against the seal
    with pytest.raises(RunStateError, match="seal does not include|ended and sealed"):
        a.log_bytes("late.txt", b"x")
    with pytest.raises(RunStateError, match=fenced):
        a.set_tag("late", "v")
    view = store.get_run(a.run_id)
    assert view.params == {} and view.artifacts == {} and "late" not in view.tags
