"""`casstore verify` finds a flipped byte, a deleted chunk, a tampered manifest, a damaged
recipe or model entry, and names what each affects; exit status 1 for any of them. Small
files are stored as one chunk with no recipe (format version 2): the same damage to that
chunk is found too."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from casstore.cli import cli
from casstore.maintenance.verify import verify_store
from casstore.objects import ChunkerParams, open_store
from casstore.runs import RunStore

from tracking_helpers import corrupt_artifact

SMALL = ChunkerParams(min_size=1024, avg_size=4096, max_size=16384)


class Fixture:
    def __init__(self, root: Path) -> None:
        rng = random.Random(7)
        self.root = root
        self.store = RunStore(open_store(str(root), chunker=SMALL))
        exp = self.store.get_or_create_experiment("verify")
        self.shared = rng.randbytes(40_000)
        a = self.store.create_run(exp, run_name="a")
        a.log_bytes("data/shared.bin", self.shared)
        a.bind_artifact("only_a.txt", *self.store.objects.put_bytes(b"a" * 3000))  # a stored one-chunk file
        a.log_bytes("notes.txt", b"held in its run record\n")  # a small artifact, inline
        self.a_digest = a.end()
        b = self.store.create_run(exp, run_name="b")
        b.log_bytes("copy/shared.bin", self.shared)
        b.log_bytes("only_b.bin", rng.randbytes(20_000))
        b.end()
        self.a, self.b = a.run_id, b.run_id
        self.shared_digest = self.store.get_run(self.a).artifacts["data/shared.bin"].digest

    def path(self, key: str) -> Path:
        return self.root / key

    def key(self, kind: str, digest: str) -> str:
        return self.store.objects.layout.key(kind, digest)

    def shared_chunk(self) -> str:
        return self.store.objects.chunk_digests(self.shared_digest)[1]

    def verify(self, *args: str) -> tuple[int, str, str]:
        r = CliRunner().invoke(cli, ["verify", "--store", str(self.root), *args])
        return r.exit_code, r.stdout, r.stderr


@pytest.fixture
def fx(tmp_path: Path) -> Fixture:
    return Fixture(tmp_path / "store")


def test_a_sound_store_verifies_with_exit_0(fx: Fixture) -> None:
    code, out, _ = fx.verify("--all")
    assert code == 0 and out.startswith("OK: verified")
    code, out, _ = fx.verify("--all", "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] is True and report["problems"] == []
    assert report["checked"]["runs"] == 2 and report["checked"]["manifests"] == 2
    assert report["checked"]["chunks"] == len(list(fx.store.objects.iter_chunks()))
    assert fx.verify(fx.a)[0] == 0
    assert fx.verify("--all", "--deep")[0] == 0


def test_a_flipped_byte_in_a_chunk(fx: Fixture) -> None:
    chunk = fx.shared_chunk()
    p = fx.path(fx.key("chunks", chunk))
    data = bytearray(p.read_bytes())
    data[100] ^= 0x01
    p.write_bytes(bytes(data))
    code, out, err = fx.verify("--all")
    assert code == 1
    assert f"CORRUPT chunks/{chunk[:2]}/{chunk}" in out
    assert f"affects run {fx.a} artifact data/shared.bin" in out
    assert f"affects run {fx.b} artifact copy/shared.bin" in out
    assert "FAILED" in err
    # a run's own verification finds it too, and so does the JSON report
    code, out, _ = fx.verify(fx.b, "--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    (problem,) = report["problems"]
    assert problem["kind"] == "corrupt" and problem["object"].endswith(chunk)
    assert {"run": fx.b, "artifact": "copy/shared.bin"} in problem["affects"]


def test_a_deleted_chunk(fx: Fixture) -> None:
    chunk = fx.shared_chunk()
    fx.path(fx.key("chunks", chunk)).unlink()
    code, out, _ = fx.verify("--all")
    assert code == 1
    assert f"MISSING chunks/{chunk[:2]}/{chunk}" in out
    assert f"affects run {fx.a} artifact data/shared.bin" in out
    assert fx.verify(fx.a)[0] == 1
    assert fx.verify(fx.a, fx.b)[0] == 1


def test_a_tampered_manifest(fx: Fixture) -> None:
    key = f"runs/{fx.a}/seal"  # version 4 holds the manifest in the seal
    p = fx.path(key)
    p.write_bytes(p.read_bytes().replace(b"only_a.txt", b"only_X.txt"))
    code, out, _ = fx.verify("--all")
    assert code == 1
    # the seal's own check fails before its manifest is read: a damaged record
    assert f"CORRUPT {key}" in out and "does not match its own BLAKE3" in out and f"affects run {fx.a}" in out
    code, out, _ = fx.verify(fx.a, "--json")
    assert code == 1 and json.loads(out)["problems"][0]["object"] == key
    assert fx.verify(fx.b)[0] == 0  # the other run is untouched


def test_a_damaged_recipe_and_a_recipe_that_lies(fx: Fixture) -> None:
    from casstore.objects.recipes import Recipe

    only_b = fx.store.get_run(fx.b).artifacts["only_b.bin"].digest
    fx.path(fx.key("files", only_b)).write_bytes(b"\x93garbage")
    code, out, _ = fx.verify("--all")
    assert code == 1 and f"CORRUPT files/{only_b[:2]}/{only_b}" in out
    assert f"affects run {fx.b} artifact only_b.bin" in out

    # a well-formed recipe listing real chunks of other content: only a deep check sees it
    other = fx.store.objects.recipe(fx.shared_digest)
    fx.path(fx.key("files", only_b)).write_bytes(Recipe(other.size, other.chunks).encode())
    assert fx.verify("--all")[0] == 0
    code, out, _ = fx.verify("--all", "--deep")
    assert code == 1 and "not to the file's digest" in out
    assert fx.verify(fx.b)[0] == 1  # run scope always re-hashes whole files


def test_a_missing_file_and_a_damaged_model_entry(fx: Fixture) -> None:
    from casstore.registry import Registry

    h = fx.store.create_run(fx.store.get_or_create_experiment("verify"))
    w = h.bind_artifact("m/model.bin", *fx.store.objects.put_bytes(b"weights" * 500))
    entry = {"v": 1, "kind": "model", "name": "m", "run_id": h.run_id, "created": "", "flavors": {"python_function": {}},
             "files": {"model.bin": {"digest": w.digest, "size": w.size}}}
    model = h.add_model("m", entry)
    h.end()
    Registry(fx.store.backend).create_version("fraud", model, run_id=h.run_id)
    assert fx.verify("--all")[0] == 0
    p = fx.path(fx.key("models", model))
    p.write_bytes(p.read_bytes() + b" ")
    code, out, _ = fx.verify("--all")
    assert code == 1 and f"CORRUPT models/{model[:2]}/{model}" in out
    assert f"affects run {h.run_id} model m" in out
    assert "affects registered model fraud version 1" in out
    # the model file is one chunk, stored with no recipe: without that chunk it is missing
    assert not fx.path(fx.key("files", w.digest)).exists()
    fx.path(fx.key("chunks", w.digest)).unlink()
    code, out, _ = fx.verify(h.run_id)
    assert code == 1 and f"MISSING files/{w.digest[:2]}/{w.digest}" in out
    code, out, _ = fx.verify("--all")
    assert code == 1 and f"MISSING files/{w.digest[:2]}/{w.digest}" in out


def test_a_recipe_that_is_not_the_one_a_model_pins(fx: Fixture) -> None:
    from blake3 import blake3

    from casstore.objects.recipes import Recipe

    data = random.Random(3).randbytes(30_000)
    h = fx.store.create_run(fx.store.get_or_create_experiment("verify"))
    w = h.log_bytes("m/model.bin", data)
    recipe_path = fx.path(fx.store.objects.layout.recipe_key(w.digest))
    pin = blake3(recipe_path.read_bytes()).hexdigest()
    entry = {"v": 1, "kind": "model", "name": "m", "run_id": h.run_id, "created": "", "flavors": {"python_function": {}},
             "files": {"model.bin": {"digest": w.digest, "size": w.size, "recipe": pin}}}
    model = h.add_model("m", entry)
    h.end()
    assert fx.verify("--all")[0] == 0 and fx.verify(h.run_id)[0] == 0
    # the same content cut elsewhere: the file reads back whole, but it is not the recipe the model pins
    halves = [fx.store.objects.put_bytes(part).digest for part in (data[:15_000], data[15_000:])]
    chunks = fx.store.objects.recipe(halves[0]).chunks + fx.store.objects.recipe(halves[1]).chunks
    assert chunks != fx.store.objects.recipe(w.digest).chunks
    recipe_path.write_bytes(Recipe(len(data), chunks).encode())
    assert fx.store.objects.get_bytes(w.digest) == data
    for args in (["--all"], ["--all", "--deep"], [h.run_id]):
        code, out, _ = fx.verify(*args)
        assert code == 1 and f"MISMATCH {fx.store.objects.layout.model_key(model)}" in out, (args, out)
        assert f"pins recipe {pin}" in out and f"affects run {h.run_id} model m" in out
        # the file itself is sound: the model is the one problem
        assert [p["object"] for p in json.loads(fx.verify(*args, "--json")[1])["problems"]] == [fx.store.objects.layout.model_key(model)]


def test_deleted_runs_are_skipped(fx: Fixture) -> None:
    fx.store.delete_run(fx.a)
    fx.path(fx.key("chunks", fx.store.get_run(fx.a).artifacts["only_a.txt"].digest)).unlink()  # a one-chunk file
    report = verify_store(fx.store)
    assert report.ok and report.skipped_deleted_runs == 1


def test_a_flipped_byte_in_a_file_stored_as_one_chunk(fx: Fixture) -> None:
    digest = fx.store.get_run(fx.a).artifacts["only_a.txt"].digest
    assert not fx.path(fx.key("files", digest)).exists(), "a one-chunk file has no recipe"
    p = fx.path(fx.key("chunks", digest))
    data = bytearray(p.read_bytes())
    data[7] ^= 0x20
    p.write_bytes(bytes(data))
    for args in (("--all",), ("--all", "--deep"), (fx.a,)):
        code, out, _ = fx.verify(*args, "--json")
        report = json.loads(out)
        assert code == 1, args
        (problem,) = report["problems"]
        assert problem["kind"] == "corrupt" and problem["object"] == f"chunks/{digest[:2]}/{digest}", args
        assert problem["affects"] == [{"run": fx.a, "artifact": "only_a.txt"}], args
    assert fx.verify(fx.b)[0] == 0


def test_a_missing_file_stored_as_one_chunk(fx: Fixture) -> None:
    digest = fx.store.get_run(fx.a).artifacts["only_a.txt"].digest
    fx.path(fx.key("chunks", digest)).unlink()
    for args in (("--all",), ("--all", "--deep"), (fx.a,)):
        code, out, _ = fx.verify(*args, "--json")
        report = json.loads(out)
        assert code == 1, args
        (problem,) = report["problems"]
        assert problem["kind"] == "missing" and problem["object"] == f"files/{digest[:2]}/{digest}", args
        assert {"run": fx.a, "artifact": "only_a.txt"} in problem["affects"], args


@pytest.mark.parametrize("damage", ["flipped", "missing"])
def test_a_damaged_artifact_held_in_its_run_record(fx: Fixture, damage: str) -> None:
    from casstore.runs import layout

    assert fx.store.get_run(fx.a).artifacts["notes.txt"].inline
    assert fx.verify("--all")[0] == 0 and fx.verify(fx.a)[0] == 0
    key = layout.artifact_key(fx.a, "notes.txt")
    if damage == "flipped":  # still a well-formed record, with one byte of its content changed
        corrupt_artifact(fx.store, fx.a, "notes.txt", at=7)
    else:
        fx.path(key).unlink()
    for args in (("--all",), ("--all", "--deep"), (fx.a,)):
        code, out, _ = fx.verify(*args, "--json")
        assert code == 1, args
        (problem,) = json.loads(out)["problems"]
        assert problem["object"] == key and problem["kind"] == ("corrupt" if damage == "flipped" else "missing"), args
        assert problem["affects"] == [{"run": fx.a, "artifact": "notes.txt"}], args
    assert fx.verify(fx.b)[0] == 0


def test_verify_needs_runs_or_all(fx: Fixture) -> None:
    code, _, err = fx.verify()
    assert code == 2 and "--all" in err


def test_verify_on_s3_finds_a_deleted_chunk(s3_url: str, store_layout: str) -> None:
    """A chunk deleted: its object in a loose store, the pack that holds it (and so every
    chunk in that pack) in a packed one."""
    store = RunStore(open_store(s3_url, chunker=SMALL))
    h = store.create_run(store.get_or_create_experiment("s3"))
    entry = h.log_bytes("data.bin", random.Random(1).randbytes(30_000))
    h.end()
    assert verify_store(store).ok
    chunks = store.objects.chunk_digests(entry.digest)
    loc = store.objects.packs.get(chunks[0]) if store.objects.packs is not None else None
    if loc is None:
        store.backend.delete(store.objects.layout.chunk_key(chunks[0]))
        gone = [chunks[0]]
    else:
        store.backend.delete(store.objects.layout.pack_key(loc.pack))
        packs = store.objects.packs
        gone = sorted({d for d in chunks if (where := packs.get(d)) is not None and where.pack == loc.pack})
    r = CliRunner().invoke(cli, ["verify", "--all", "--json", "--store", s3_url])
    report = json.loads(r.stdout)
    assert r.exit_code == 1
    assert sorted(p["object"] for p in report["problems"]) == sorted(store.objects.layout.chunk_key(d) for d in gone)
    for problem in report["problems"]:
        assert problem["kind"] == "missing" and {"run": h.run_id, "artifact": "data.bin"} in problem["affects"]


def test_verify_all_of_a_packs_store_on_s3_reads_each_pack_in_few_ranged_requests(
    s3_env: Any, s3_proxy: Any, tmp_path: Path
) -> None:
    """``verify --all`` re-hashes every chunk of a packs store, reading the chunks that lie side
    by side in a pack with one ranged GET per 16 MiB: 24 MiB in about a hundred chunks of 256 KiB
    cost a few GETs of the packs, not one per chunk."""
    from casstore.runs import open_run_store

    url = s3_env.fresh_url("verify")
    writer = open_run_store(url)
    h = writer.create_run(writer.get_or_create_experiment("verify"))
    data = random.Random(7).randbytes(24 << 20)
    (tmp_path / "model.bin").write_bytes(data)
    h.log_file("model.bin", tmp_path / "model.bin")
    h.end()
    packs = [k for k in writer.backend.list("packs/")]
    reader = open_run_store(url, {"endpoint_url": s3_proxy.endpoint_url})
    report = verify_store(reader)
    assert report.ok and report.checked["bytes"] == len(data), report.to_dict()
    chunks = report.checked["chunks"]
    assert chunks > 60, chunks  # the 256 KiB chunker of packs stores
    gets = s3_proxy.count("GET", "packs")
    assert gets <= 2 * len(packs) + 2, (gets, len(packs), dict(s3_proxy.requests))
