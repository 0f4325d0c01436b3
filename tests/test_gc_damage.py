"""gc proves death before it deletes: when a live reference (a run record, a manifest, a
recipe, a model entry, a registry record) cannot be read or proven, gc deletes and marks
nothing, says what blocked it and exits 1; once the damage is repaired, it collects
the garbage as before. Each kind of damage, on a local store and on S3 (moto)."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from casstore.backend import Backend
from casstore.cli import cli
from casstore.maintenance.gc import collect_garbage
from casstore.maintenance.scan import scan_store
from casstore.objects import ChunkerParams, open_store
from casstore.registry import Registry
from casstore.runs import RunStore, layout
from casstore.runs.batches import batch_key, batch_number, batches_prefix

SMALL = ChunkerParams(min_size=1024, avg_size=4096, max_size=16384)


@dataclass
class Damaged:
    store: RunStore
    keys: dict[str, str]  # what -> key of the object to damage
    live: dict[str, set[str]]  # content every live reference needs
    garbage: str  # the file digest of the deleted run's file


def _model_entry(run_id: str, digest: str, size: int) -> dict[str, object]:
    return {"v": 1, "kind": "model", "name": "m", "run_id": run_id, "created": "", "flavors": {"x": {}},
            "files": {"model.bin": {"digest": digest, "size": size}}}


def populated(url: str, rng: random.Random) -> Damaged:
    """An open run (a file, a model whose file only its entry names), a sealed run, a model
    pinned by a registry version only, and a deleted run's garbage, marked by a first gc.
    Loose chunks, whose objects the checks below count (on S3 too, where new stores get packs)."""
    store = RunStore(open_store(url, chunker=SMALL, layout="loose"))
    objects, lay = store.objects, store.objects.layout
    exp = store.get_or_create_experiment("damage")
    a = store.create_run(exp)
    f_a = objects.put_bytes(rng.randbytes(40_000))
    a.bind_artifact("a.bin", *f_a)
    w_a = objects.put_bytes(rng.randbytes(30_000))
    m_a = a.add_model("m", _model_entry(a.run_id, w_a.digest, w_a.size))
    b = store.create_run(exp)
    f_b = objects.put_bytes(rng.randbytes(40_000))
    b.bind_artifact("b.bin", *f_b)
    b_digest = b.end()
    r = store.create_run(exp)
    w_r = objects.put_bytes(rng.randbytes(30_000))
    m_r = r.add_model("m", _model_entry(r.run_id, w_r.digest, w_r.size))
    r.end()
    Registry(store.backend).create_version("pinned", m_r, run_id=r.run_id)
    store.delete_run(r.run_id)  # its model lives on through the registry version only
    g = store.create_run(exp)
    f_g = objects.put_bytes(rng.randbytes(40_000))
    g.bind_artifact("g.bin", *f_g)
    g.end()
    store.delete_run(g.run_id)
    live = {"files": {f_a.digest, w_a.digest, f_b.digest, w_r.digest}, "models": {m_a, m_r}, "chunks": set()}
    for f in live["files"]:
        live["chunks"].update(objects.chunk_digests(f))
    keys = {
        "recipe": lay.recipe_key(f_a.digest),
        "recipe of a model's file": lay.recipe_key(w_r.digest),
        "artifact record": layout.artifact_key(a.run_id, "a.bin"),
        "model reference": layout.model_ref_key(a.run_id, "m"),
        # version 5 keeps a sealed run's manifest in its seal only
        "manifest": layout.manifest_key(b.run_id, b_digest) if store.manifest_objects else layout.seal_key(b.run_id),
        "model entry": lay.model_key(m_r),
        "registry version": f"registry/{layout.name_key('pinned')}/versions/{1:010d}",
        # the open run's batch records: the first, and the last (the one its witness names)
        "batch record": batch_key(a.run_id, 1),
        "last batch record": batch_key(a.run_id, max(_batch_numbers(store, a.run_id))),
    }
    make_old(store)
    first = collect_garbage(store.backend, grace=0, slack=0)
    assert first.ok and first.marked["files"] == 1
    return Damaged(store, keys, live, f_g.digest)


def _batch_numbers(store: RunStore, run_id: str) -> list[int]:
    return [n for k in store.backend.list(batches_prefix(run_id)) if (n := batch_number(k)) is not None]


def make_old(store: RunStore) -> None:
    """Let the objects written so far age past the mark (a local store's mtimes are set back;
    S3 keeps whole seconds, so wait)."""
    root = getattr(store.backend, "root", None)
    if root is None:
        time.sleep(1.1)
        return
    past = time.time() - 3600
    for kind in ("chunks", "files", "models"):
        for p in (Path(root) / kind).rglob("*"):
            if p.is_file():
                os.utime(p, (past, past))


def rewrite(backend: Backend, key: str, data: bytes | None) -> None:
    backend.delete(key)
    if data is not None:
        backend.put_blob(key, data)


def flip_digest_char(data: bytes) -> bytes:
    """Change one hex digit of the first digest in ``data`` (a reference now names nothing)."""
    import re

    m = re.search(rb"[0-9a-f]{64}", data)
    assert m is not None
    i = m.start() + 10
    return data[:i] + (b"0" if data[i:i + 1] != b"0" else b"1") + data[i + 1:]


DAMAGE: dict[str, Callable[[bytes], bytes | None]] = {
    "deleted": lambda d: None,
    "truncated": lambda d: d[: len(d) // 2],
    "digest changed": flip_digest_char,
}

CASES = [
    ("recipe", "deleted"),
    ("recipe", "truncated"),
    ("recipe", "digest changed"),
    ("recipe of a model's file", "deleted"),
    ("artifact record", "deleted"),
    ("artifact record", "truncated"),
    ("artifact record", "digest changed"),
    ("model reference", "deleted"),
    ("model reference", "truncated"),
    ("model reference", "digest changed"),
    ("manifest", "truncated"),
    ("manifest", "digest changed"),
    ("model entry", "deleted"),
    ("model entry", "digest changed"),
    ("registry version", "truncated"),
    ("registry version", "digest changed"),
    ("batch record", "deleted"),
    ("batch record", "truncated"),
    ("last batch record", "deleted"),
]


def check_blocked_then_repaired(d: Damaged, what: str, how: str) -> None:
    backend = d.store.backend
    key = d.keys[what]
    original = backend.get(key)
    rewrite(backend, key, DAMAGE[how](original))
    before = scan_store(backend, d.store.objects.layout).content
    for _ in range(2):
        r = collect_garbage(backend, grace=0, slack=0)
        assert not r.ok and r.deleted_total == 0 and r.marked_total == 0
        # the report names the damaged object, or the run or registry it belongs to
        named = [key.split("/")[1]] if key.startswith("runs/") else ["registry", "registered model"] \
            if key.startswith("registry/") else [key]
        assert any(n in b["object"] or n in b["affects"] for b in r.blocked for n in named), r.blocked
    after = scan_store(backend, d.store.objects.layout).content
    assert after == before  # nothing deleted at all
    damaged = key.rsplit("/", 1)[-1]
    for kind, digests in d.live.items():
        assert digests - {damaged} <= after[kind], f"{kind} lost after damage to the {what} ({how})"
    # repaired (restored from a backup): gc collects the garbage, and only it
    rewrite(backend, key, original)
    make_old(d.store)
    runs = [collect_garbage(backend, grace=0, slack=0) for _ in range(2)]
    assert all(r.ok for r in runs) and sum(r.deleted["files"] for r in runs) == 1
    left = scan_store(backend, d.store.objects.layout).content
    assert d.garbage not in left["files"]
    for kind, digests in d.live.items():
        assert digests <= left[kind]


@pytest.mark.parametrize(("what", "how"), CASES, ids=[f"{w}-{h}".replace(" ", "_") for w, h in CASES])
def test_damage_to_a_live_reference_blocks_gc_local(tmp_path: Path, what: str, how: str) -> None:
    d = populated(str(tmp_path / "s"), random.Random(5))
    check_blocked_then_repaired(d, what, how)


S3_CASES = [("recipe", "deleted"), ("artifact record", "deleted"), ("last batch record", "deleted"),
            ("artifact record", "truncated"), ("manifest", "digest changed"),
            ("model entry", "digest changed"), ("registry version", "truncated")]


@pytest.mark.parametrize(("what", "how"), S3_CASES, ids=[f"{w}-{h}".replace(" ", "_") for w, h in S3_CASES])
def test_damage_to_a_live_reference_blocks_gc_s3(s3_url: str, what: str, how: str) -> None:
    d = populated(s3_url, random.Random(6))
    check_blocked_then_repaired(d, what, how)


def test_gc_command_names_what_blocked_it_and_exits_1(tmp_path: Path) -> None:
    d = populated(str(tmp_path / "s"), random.Random(7))
    key = d.keys["recipe"]
    rewrite(d.store.backend, key, None)
    r = CliRunner().invoke(cli, ["gc", "--grace", "0s", "--store", str(tmp_path / "s")])
    assert r.exit_code == 1
    assert key in r.stdout and "deleted and marked nothing" in r.stderr
    r = CliRunner().invoke(cli, ["gc", "--grace", "0s", "--json", "--store", str(tmp_path / "s")])
    assert r.exit_code == 1 and key in r.stdout


def test_damage_in_a_deleted_run_does_not_block(tmp_path: Path) -> None:
    """A deleted run is no root: its records may be damaged, gc still collects its data."""
    store = RunStore(open_store(str(tmp_path / "s"), chunker=SMALL))
    h = store.create_run(store.get_or_create_experiment("x"))
    h.bind_artifact("g.bin", *store.objects.put_bytes(random.Random(1).randbytes(30_000)))
    key = layout.artifact_key(h.run_id, "g.bin")
    store.delete_run(h.run_id)
    rewrite(store.backend, key, store.backend.get(key)[:10])
    make_old(store)
    assert collect_garbage(store.backend, grace=0, slack=0).ok
    r = collect_garbage(store.backend, grace=0, slack=0)
    assert r.ok and r.deleted["files"] == 1


def test_content_the_listing_missed_is_asked_for_again_not_called_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer publishes a record after its content: gc's one listing can show the record
    and miss the content (written while the listing went by). That is no damage: gc asks
    for such objects again before it blocks."""
    import casstore.maintenance.gc as gc_mod

    d = populated(str(tmp_path / "s"), random.Random(8))
    real = gc_mod.scan_store
    recipe = d.keys["recipe"].rsplit("/", 1)[-1]

    def listing_that_missed_it(backend: Backend, lay: object) -> object:
        scan = real(backend, lay)  # type: ignore[arg-type]
        scan.content["files"].discard(recipe)
        return scan

    monkeypatch.setattr(gc_mod, "scan_store", listing_that_missed_it)
    r = collect_garbage(d.store.backend, grace=0, slack=0)
    assert r.ok, r.blocked
    # the same gone for real blocks
    d.store.backend.delete(d.keys["recipe"])
    assert not collect_garbage(d.store.backend, grace=0, slack=0).ok


def test_each_logging_call_of_an_open_run_keeps_one_witness(tmp_path: Path) -> None:
    """A batch lists the records each call bound; one witness per writer stays, naming the last."""
    store = RunStore(open_store(str(tmp_path / "s"), chunker=SMALL))
    h = store.create_run(store.get_or_create_experiment("x"))
    rng = random.Random(2)
    for i in range(3):
        h.log_bytes(f"f{i}.bin", rng.randbytes(20_000))
    h.log_param("lr", "0.1")
    prefix = layout.run_prefix(h.run_id)
    witnesses = [k for k in store.backend.list(prefix) if k.removeprefix(prefix).startswith("last-")]
    top = max(_batch_numbers(store, h.run_id))
    assert witnesses == [prefix + f"last-{top - 1:010d}"]  # the param's batch lists no record
    make_old(store)
    assert collect_garbage(store.backend, grace=0, slack=0).ok


def test_records_written_before_batches_listed_them_are_still_roots(tmp_path: Path) -> None:
    """An open run written by an older casstore (records no batch lists, no witness): gc reads
    its records as before and keeps what they reference."""
    from casstore.runs.records import ArtifactEntry, encode_record

    store = RunStore(open_store(str(tmp_path / "s"), chunker=SMALL))
    h = store.create_run(store.get_or_create_experiment("x"))
    f = store.objects.put_bytes(random.Random(3).randbytes(40_000))
    key = layout.artifact_key(h.run_id, "old.bin")
    store.backend.put_if_absent(key, encode_record(ArtifactEntry("old.bin", f.digest, f.size).to_record()))
    h.log_param("lr", "0.1")  # a batch without a list of records
    assert store.get_run(h.run_id).artifacts["old.bin"].digest == f.digest
    make_old(store)
    for _ in range(2):
        r = collect_garbage(store.backend, grace=0, slack=0)
        assert r.ok and r.deleted_total == 0 and r.marked_total == 0


def test_a_removed_record_of_a_resumed_run_blocks_gc(tmp_path: Path) -> None:
    store = RunStore(open_store(str(tmp_path / "s"), chunker=SMALL))
    h = store.create_run(store.get_or_create_experiment("x"))
    h.log_bytes("before.bin", random.Random(4).randbytes(30_000))
    h.end()
    h = store.reopen_run(h.run_id)
    h.log_bytes("after.bin", random.Random(5).randbytes(30_000))
    make_old(store)
    assert collect_garbage(store.backend, grace=0, slack=0).ok
    last = max(_batch_numbers(store, h.run_id))  # the resumed generation's batch listing after.bin
    store.backend.delete(batch_key(h.run_id, last))
    r = collect_garbage(store.backend, grace=0, slack=0)
    assert not r.ok and r.marked_total == 0
    assert any(b["object"] == batch_key(h.run_id, last) for b in r.blocked)


def test_a_record_the_listing_missed_is_asked_for_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A record bound while gc's listing went by can be missed by the listing and its batch
    seen: gc asks for it again before it calls it removed."""
    import casstore.maintenance.gc as gc_mod

    d = populated(str(tmp_path / "s"), random.Random(9))
    record = d.keys["artifact record"]
    real = gc_mod.scan_store

    def listing_that_missed_it(backend: Backend, lay: object) -> object:
        scan = real(backend, lay)  # type: ignore[arg-type]
        listed = scan.runs[record.split("/")[1]].by_kind["artifacts"]  # type: ignore[attr-defined]
        listed[:] = [k for k in listed if k != record]
        return scan

    monkeypatch.setattr(gc_mod, "scan_store", listing_that_missed_it)
    assert collect_garbage(d.store.backend, grace=0, slack=0).ok
    d.store.backend.delete(record)
    r = collect_garbage(d.store.backend, grace=0, slack=0)
    assert not r.ok and [b["object"] for b in r.blocked] == [record]


@pytest.mark.parametrize("what", ["artifact record", "model reference", "last batch record"])
def test_verify_all_names_a_record_removed_from_an_open_run(tmp_path: Path, what: str) -> None:
    from casstore.maintenance.verify import verify_store

    d = populated(str(tmp_path / "s"), random.Random(10))
    assert verify_store(d.store).ok
    key = d.keys[what]
    d.store.backend.delete(key)
    report = verify_store(d.store)
    assert not report.ok
    assert [(p.object, p.kind) for p in report.problems] == [(key, "missing")]
    assert report.problems[0].affects == [{"run": key.split("/")[1]}]
