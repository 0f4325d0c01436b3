"""Version 5: a sealed run keeps its seal only. Every state between the seal and the removal
of what it holds reads as the sealed run (local and S3), a reader racing the removal falls
back to the seal, a writer whose batch number was given back is refused, resumed runs keep
their rules, gc still proves every reference, and older stores read and upgrade."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import pytest
from s3_server import S3Target
from tracking_helpers import old_store

from casstore.exceptions import ImmutableArtifactError, RunStateError
from casstore.maintenance.gc import collect_garbage
from casstore.maintenance.upgrade import upgrade_store
from casstore.maintenance.verify import verify_store
from casstore.objects.config import FORMAT_VERSION, read_config
from casstore.runs import layout, open_run_store
from casstore.runs.batches import batch_number, batches_prefix, decode_batch
from casstore.runs.compact import holding_inline, redundant_keys
from casstore.runs.records import RunView
from casstore.runs.store import RunStore


def _keys(store: RunStore, run_id: str) -> list[str]:
    return sorted(k[len(layout.run_prefix(run_id)):] for k in store.backend.list(layout.run_prefix(run_id)))


def _fill(store: RunStore, name: str = "r") -> Any:
    h = store.create_run(store.get_or_create_experiment("compact"), run_name=name, tags={"t0": "x"})
    h.log_batch(params={f"p{i}": str(i) for i in range(5)}, tags={"team": "a"})
    h.log_batch(metrics=[("loss", 1.0, 0, 5), ("loss", 0.5, 1, 6)])
    h.log_bytes("notes.txt", b"a small file")
    h.log_bytes("model/weights.bin", os.urandom(40_000))
    return h


def _same(a: RunView, b: RunView) -> None:
    assert (a.digest, a.status, a.end_time, a.params, a.tags, a.metrics, a.points, a.artifacts, a.run_name) == \
        (b.digest, b.status, b.end_time, b.params, b.tags, b.metrics, b.points, b.artifacts, b.run_name)


def test_a_sealed_run_on_a_local_disk_is_one_directory_holding_its_seal(tmp_path: Path) -> None:
    store = open_run_store(tmp_path / "s")
    assert read_config(store.backend).version == FORMAT_VERSION and store.compacts
    h = store.create_run("0")
    h.log_batch(params={"a": "1"}, tags={"t": "x"}, metrics=[("m", 1.0, 0, 5)])
    h.end()
    run_dir = tmp_path / "s" / "runs" / h.run_id
    assert [p.name for p in run_dir.iterdir()] == ["seal"]
    view = store.get_run(h.run_id)
    assert view.params == {"a": "1"} and view.tags["t"] == "x" and view.metrics == {"m": 1.0} and view.sealed
    assert [v.run_id for v in store.search_runs(filter_string="params.a = '1'")] == [h.run_id]
    assert verify_store(store, [h.run_id]).ok


@pytest.mark.parametrize("where", ["local", "s3"])
def test_every_state_between_the_seal_and_the_removal_reads_as_the_sealed_run(
        tmp_path: Path, where: str, request: pytest.FixtureRequest) -> None:
    if where == "s3":
        target: S3Target = request.getfixturevalue("moto_s3")
        for k, v in target.env.items():
            os.environ.setdefault(k, v)
        store = open_run_store(target.fresh_url("compact"))
    else:
        store = open_run_store(tmp_path / "s")
    store.compacts = False  # the end stops after the seal: the state a killed writer leaves
    h = _fill(store)
    h.end()
    sealed = store.get_run(h.run_id)
    keys = list(store.backend.list(layout.run_prefix(h.run_id)))
    seal = store.seal_record(h.run_id)
    assert seal is not None and isinstance(seal["top"], int)
    batches = [decode_batch(store.backend.get(k), k, n) for k in keys
               if k.startswith(batches_prefix(h.run_id)) and (n := batch_number(k)) is not None]
    holding = holding_inline(batches)
    doomed = redundant_keys(h.run_id, keys, int(seal["top"]), holding=holding)
    if store.backend.local:  # loose chunks: artifact records, each call's listed by a batch
        # params and tags, metrics, the two batches listing the artifact records, the close; the
        # witness of the last batch that listed records
        assert holding == set()
        assert {k.rsplit("/", 1)[-1] for k in doomed} == {"meta", *(f"batch-000000000{n}" for n in range(1, 6)),
                                                            "last-0000000004"}
    else:  # packs: artifacts bound in the batches; the one holding notes.txt's content stays
        assert holding == {3}
        assert {k.rsplit("/", 1)[-1] for k in doomed} == {"meta", *(f"batch-000000000{n}" for n in (1, 2, 4, 5)),
                                                            "last-0000000004"}
    saved = {k: store.backend.get(k) for k in doomed}
    # any part of them removed: the run reads the same, searches find it, verify and gc pass
    for n in range(len(doomed) + 1):
        for gone in itertools.combinations(doomed, n):
            for k in gone:
                store.backend.delete(k)
            reader = RunStore(store.objects)
            _same(reader.get_run(h.run_id), sealed)
            assert [v.run_id for v in reader.search_runs(filter_string="params.p3 = '3'")] == [h.run_id]
            if n in (1, len(doomed)):
                assert verify_store(reader, [h.run_id]).ok
            for k in gone:  # back, for the next state
                assert store.backend.put_if_absent(k, saved[k])
    assert collect_garbage(store.backend, grace=0, slack=0).ok
    assert store.artifact_bytes(h.run_id, store.get_run(h.run_id).artifacts["model/weights.bin"])


def test_a_reader_that_listed_an_open_run_before_its_end_reads_the_seal(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_run_store(tmp_path / "s")
    h = _fill(store)
    reader = RunStore(store.objects)
    listed = list(store.backend.list(layout.run_prefix(h.run_id)))
    h.end()
    assert _keys(store, h.run_id)[-1] == "seal" and "meta" not in _keys(store, h.run_id)
    # the reader saw no seal and listed the open run's records; the end removed them before it read them
    asked = {"seal": 0}
    real_seal, real_list = reader.seal_record, reader.backend.list

    def stale_seal(run_id: str) -> Any:
        asked["seal"] += 1
        return None if asked["seal"] == 1 else real_seal(run_id)

    def stale_list(prefix: str = "") -> Any:
        return iter(listed) if prefix == layout.run_prefix(h.run_id) else real_list(prefix)

    monkeypatch.setattr(reader, "seal_record", stale_seal)
    monkeypatch.setattr(reader.backend, "list", stale_list)
    view = reader.get_run(h.run_id)
    monkeypatch.undo()
    _same(view, store.get_run(h.run_id))
    assert view.sealed and asked["seal"] >= 2  # open at first, then sealed: read from the seal


def test_a_writer_whose_batch_number_was_given_back_is_refused(tmp_path: Path) -> None:
    store = open_run_store(tmp_path / "s")
    h = store.create_run("0")
    h.log_param("a", "1")
    # a second writer of the run, in another process: it has read batch 1 (as its listing showed it)
    other_store = open_run_store(tmp_path / "s")
    late = other_store.open_run(h.run_id)
    late.log_param("a", "1")  # the same value: nothing written, batch 1 read
    h.end()
    assert _keys(store, h.run_id) == ["seal"]  # batches 1 and 2 (the close) given back
    # its listing now shows no batch: it numbers 1, which is free again, and the seal names another batch 1
    with pytest.raises(RunStateError, match="sealed"):
        late.log_param("b", "2")
    assert _keys(store, h.run_id) == ["seal"]  # its stray batch is removed again
    assert store.get_run(h.run_id).params == {"a": "1"}


def test_a_batch_created_after_the_seal_counts_only_if_the_seal_folded_it(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The check after a write, both ways: a batch the seal names is the writer's success."""
    store = open_run_store(tmp_path / "s")
    h = store.create_run("0")
    writer = open_run_store(tmp_path / "s").open_run(h.run_id)
    real = writer._backend.put_if_absent
    sealed: dict[str, str] = {}

    def put_then_end(key: str, data: bytes) -> bool:
        done = real(key, data)
        if key.startswith(batches_prefix(h.run_id)) and not sealed:
            sealed["digest"] = h.end()  # the end lists the batch just written and folds it
        return done

    monkeypatch.setattr(writer._backend, "put_if_absent", put_then_end)
    writer.log_param("a", "1")  # created, then sealed: counted, since the seal names it
    monkeypatch.undo()
    assert store.get_run(h.run_id).params == {"a": "1"} and store.get_run(h.run_id).digest == sealed["digest"]


def test_a_resumed_run_folds_over_its_previous_seal_and_numbers_after_it(tmp_path: Path) -> None:
    store = open_run_store(tmp_path / "s")
    h = _fill(store)
    first = h.end()
    top = store.seal_record(h.run_id)["top"]  # type: ignore[index]
    r = store.reopen_run(h.run_id)
    with pytest.raises(ImmutableArtifactError, match="p1"):
        r.log_param("p1", "changed")  # bound in the first generation, whose batches are gone
    r.log_param("p1", "1")  # the same value: a no-op
    r.log_batch(params={"extra": "y"}, tags={"team": "b"}, metrics=[("loss", 0.25, 2, 7)])
    assert [int(k.rsplit("-", 1)[-1]) for k in store.backend.list(batches_prefix(h.run_id))] == [top + 1]
    live = store.get_run(h.run_id)
    assert live.status == "RUNNING" and live.params["p0"] == "0" and live.params["extra"] == "y"
    assert live.tags["team"] == "b" and live.metrics["loss"] == 0.25 and len(live.points) == 3
    assert set(live.artifacts) == {"notes.txt", "model/weights.bin"}
    second = r.end()
    view = store.get_run(h.run_id)
    assert view.digest == second and view.params == live.params and view.points == live.points
    assert store.read_manifest(h.run_id, second)["previous"] == first
    assert "meta" not in _keys(store, h.run_id) and not list(store.backend.list(batches_prefix(h.run_id)))
    assert verify_store(store, [h.run_id]).ok
    # and again: generation 2 follows the seal of 1
    open_run_store(tmp_path / "s").reopen_run(h.run_id).end()
    assert [s["generation"] for s in store.seal_history(h.run_id)] == [0, 1, 2]


def test_gc_keeps_every_file_a_compacted_run_references(tmp_path: Path) -> None:
    store = open_run_store(tmp_path / "s")
    h = _fill(store)
    h.end()
    kept = store.get_run(h.run_id).artifacts["model/weights.bin"].digest
    dead = store.create_run("0")
    dead.log_bytes("x.bin", os.urandom(40_000))
    dead.end()
    store.delete_run(dead.run_id)
    for _ in range(2):
        report = collect_garbage(store.backend, grace=0, slack=0)
        assert report.ok
    assert not store.objects.missing_files([kept])
    assert store.artifact_bytes(h.run_id, store.get_run(h.run_id).artifacts["model/weights.bin"])
    assert verify_store(store).ok


def test_upgrade_compacts_a_version_4_store_and_its_runs_read_as_before(tmp_path: Path) -> None:
    url = old_store(tmp_path / "s", version=4)
    old = open_run_store(url)
    assert not old.compacts and old.manifest_objects
    sealed = _fill(old, "sealed")
    sealed.end()
    resumed = _fill(old, "resumed")
    resumed.end()
    again = old.reopen_run(resumed.run_id)
    again.log_param("more", "1")
    again.end()
    still_open = _fill(old, "open")
    before = {r: old.get_run(r) for r in (sealed.run_id, resumed.run_id, still_open.run_id)}
    report = upgrade_store(old)
    assert (report.from_version, report.to_version, report.compacted) == (4, FORMAT_VERSION, 2)
    store = open_run_store(url)
    assert store.compacts
    for r in (sealed.run_id, resumed.run_id):
        assert [k for k in _keys(store, r) if not k.startswith(("artifacts/", "dirs/"))] in (
            ["seal"], ["reopened/00000001", "seal", "seals/00000001"])
    for r, view in before.items():
        _same(store.get_run(r), view)
    assert "meta" in _keys(store, still_open.run_id)  # open: as it was, and it ends in the new format
    h = store.open_run(still_open.run_id)
    with pytest.raises(ImmutableArtifactError):
        h.log_param("p0", "other")
    h.end()
    assert "meta" not in _keys(store, still_open.run_id)
    assert verify_store(store).ok and collect_garbage(store.backend, grace=0, slack=0).ok
    with pytest.raises(Exception, match="nothing to upgrade"):
        upgrade_store(store)


def test_the_end_makes_the_seal_and_the_experiment_entry_durable_and_nothing_it_removes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from casstore.backend import local

    store = open_run_store(tmp_path / "s")
    exp = store.get_or_create_experiment("durable")
    store.create_run(exp).end()  # the experiment's runs directory is made and flushed
    h = store.create_run(exp)
    h.log_batch(params={"a": "1"}, tags={"t": "x"}, metrics=[("m", 1.0, 0, 5)])
    synced: list[str] = []
    monkeypatch.setattr(local, "_fsync_path", lambda p: synced.append(os.path.relpath(p, tmp_path / "s")))
    h.end()
    # the seal and its directory, runs/ (which gained the run's new directory), the run's entry in its
    # experiment and that directory: not the meta or the batches, which the seal holds and which go
    entry = store.entry_key(exp, h.run_id)  # (from version 6 named by time: <time id>.<run id>)
    assert layout.parse_entry(entry.rsplit("/", 1)[-1]) == (h.run_id, 0)
    assert sorted(synced) == sorted([f"runs/{h.run_id}/seal", f"runs/{h.run_id}", "runs",
                                     entry, f"experiments/{exp}/runs"])
    resumed = store.create_run(exp)  # ended by another process, which finds the entry by listing
    synced.clear()
    open_run_store(tmp_path / "s").open_run(resumed.run_id).end()
    assert store.entry_key(exp, resumed.run_id) in synced
