"""Every record checks itself, and damage stays small and is always found.

Every record kind written (run meta, params, tags, metric segments, artifact records,
model references, directory markers, seals, deletion markers, experiments, registry
models, versions, aliases and events; in a version-4 store the batch records that hold
params, tags and metric points) carries its own BLAKE3; every byte flipped in any
of them is refused when read, never returned as a value, and `verify --all` names it and
what it affects. Records written before checks existed still read. One damaged record
costs what it holds: its run is shown without it (and says so), listings skip a run
that cannot be read at all, with a warning naming it."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from casstore.cli import cli
from casstore.exceptions import CorruptRecordError, DamagedRunWarning
from casstore.maintenance.du import disk_usage
from casstore.maintenance.verify import verify_store
from casstore.objects import ChunkerParams, open_store
from casstore.objects.config import CONFIG_KEY, FORMAT_VERSION, StoreConfig
from casstore.objects.codec import CHECK_FIELD, pack, unpack
from casstore.registry import Registry
from casstore.runs import RunStore, layout
from casstore.runs.batches import BATCHED_FROM, Batch, batch_number, batches_prefix, decode_batch
from casstore.runs.records import decode_record

SMALL = ChunkerParams(min_size=1024, avg_size=4096, max_size=16384)


class Populated:
    """A store with one record of every kind (and a second run to show damage stays put)."""

    def __init__(self, root: Path, version: int) -> None:
        self.root = root
        self.version = version
        if version < FORMAT_VERSION:  # as an older casstore made it
            root.mkdir(parents=True)
            (root / CONFIG_KEY).write_bytes(StoreConfig(version=version, chunker=SMALL).to_json())
        self.store = store = RunStore(open_store(str(root), chunker=SMALL), metric_flush_points=2)
        assert store.batched == (version >= BATCHED_FROM)
        exp = store.get_or_create_experiment("records")
        h = store.create_run(exp, run_name="sealed", tags={"t0": "x"})
        h.log_param("lr", "0.1")
        h.set_tag("team", "a")
        h.log_metric("loss", 1.0, step=1)
        h.log_metric("loss", 0.5, step=2)  # a segment (flushed at 2 points)
        h.log_bytes("inline.txt", b"small and held in the record")
        h.log_bytes("dir/big.bin", random.Random(3).randbytes(30_000))
        w = store.objects.put_bytes(random.Random(4).randbytes(20_000))
        model = h.add_model("m", {"v": 1, "kind": "model", "name": "m", "run_id": h.run_id, "created": "",
                                  "flavors": {"x": {}}, "files": {"w.bin": {"digest": w.digest, "size": w.size}}})
        h.end()
        self.sealed = h.run_id
        o = store.create_run(exp, run_name="open")
        o.log_param("p", "1")
        o.set_tag("stage", "x")
        o.log_metric("acc", 1.0, step=0)
        o.log_metric("acc", 1.0, step=1)
        o.log_bytes("a.txt", b"a")
        o.log_bytes("b.txt", b"b")
        self.open = o.run_id
        d = store.create_run(exp, run_name="deleted")
        store.delete_run(d.run_id, "test")
        self.deleted = d.run_id
        reg = Registry(store.backend)
        reg.create_version("fraud", model, source="runs:/x/m")
        reg.set_model_tag("fraud", "k", "v")
        reg.set_alias("fraud", "champion", 1)
        if store.batched:  # params, tags and points are in batch records
            param, tag, segment = (self._batch_with(self.open, lambda b: "p" in b.params),
                                   # a sealed run of version 5 keeps its seal only: the open run's tag
                                   self._batch_with(self.open if store.compacts else self.sealed,
                                                    lambda b: ("team", "a") in b.tags or ("stage", "x") in b.tags),
                                   self._batch_with(self.open, lambda b: bool(b.points)))
        else:
            param = layout.param_key(self.open, "p")
            tag = next(iter(store.backend.list(layout.tag_prefix(self.sealed, "team"))))
            segment = next(iter(store.backend.list(layout.metrics_prefix(self.open))))
        self.key_of = {
            "run meta": layout.run_meta_key(self.open),
            "param": param,
            "tag": tag,
            "metric segment": segment,
            "artifact record": layout.artifact_key(self.open, "a.txt"),
            "file artifact record": layout.artifact_key(self.sealed, "dir/big.bin"),
            "model reference": layout.model_ref_key(self.sealed, "m"),
            "directory marker": layout.dir_marker_key(self.sealed, "dir"),
            "seal": layout.seal_key(self.sealed),
            "experiment": layout.experiment_meta_key(exp),
            "experiment name": layout.experiment_name_key("records"),
            "experiment index": layout.experiment_run_key(exp, self.open),
            "registered model": f"registry/{layout.name_key('fraud')}/model",
            "registry version": f"registry/{layout.name_key('fraud')}/versions/{1:010d}",
            "registry alias": next(iter(store.backend.list(f"registry/{layout.name_key('fraud')}/aliases/"))),
            "registry event": next(iter(store.backend.list(f"registry/{layout.name_key('fraud')}/events/"))),
        }

    def _batch_with(self, run_id: str, holds: Callable[[Batch], bool]) -> str:
        keys = sorted(self.store.backend.list(batches_prefix(run_id)))
        return next(k for k in keys if holds(decode_batch(self.store.backend.get(k), k, batch_number(k) or 0)))

    def records(self) -> list[str]:
        keys = [k for p in ("runs/", "experiments/", "registry/") for k in self.store.backend.list(p)]
        return [k for k in keys if "/manifests/" not in k]

    def flip(self, key: str, at: int) -> None:
        path = self.root / key
        data = bytearray(path.read_bytes())
        data[at % len(data)] ^= 0x01
        path.write_bytes(bytes(data))


@pytest.fixture(params=[3, 4, 5], ids=["v3", "v4", "v5"])
def pop(tmp_path: Path, request: pytest.FixtureRequest) -> Populated:
    """Every layout: per-key records (version 3), batch records (version 4), sealed runs that
    keep their seal only (version 5)."""
    return Populated(tmp_path / "s", request.param)


@pytest.fixture
def pop3(tmp_path: Path) -> Populated:
    """Version 3 only: a version-4 store was never written without checks."""
    return Populated(tmp_path / "s", 3)


def test_every_record_kind_carries_its_check(pop: Populated) -> None:
    keys = pop.records()
    kinds = {k.split("/")[2] if k.startswith("runs/") else k.split("/")[0] for k in keys}
    kinds = {"batches" if k.startswith("batch-") else k for k in kinds}  # version 4's batch-<n>
    per_run = {"batches"} if pop.store.batched else {"params", "tags", "metrics"}
    assert {"meta", "artifacts", "models", "dirs", "seal", "deleted"} | per_run <= kinds
    for key in keys:
        assert CHECK_FIELD in unpack((pop.root / key).read_bytes()), key


def test_every_byte_flipped_in_any_record_is_refused(pop: Populated) -> None:
    """Each bit flip of each byte of each record (two bits per byte): never a value."""
    for key in pop.records():
        data = (pop.root / key).read_bytes()
        for i in range(len(data)):
            for bit in (0x01, 0x80):
                bad = bytearray(data)
                bad[i] ^= bit
                with pytest.raises(CorruptRecordError):
                    decode_record(bytes(bad), key)


@pytest.mark.parametrize("what", [
    "run meta", "param", "tag", "metric segment", "artifact record", "file artifact record", "model reference",
    "directory marker", "seal", "experiment", "experiment name", "experiment index", "registered model",
    "registry version", "registry alias", "registry event",
])
def test_verify_all_names_each_damaged_record(pop: Populated, what: str) -> None:
    key = pop.key_of[what]
    assert verify_store(pop.store).ok
    pop.flip(key, 20)
    report = verify_store(pop.store)
    found = {p.object: p for p in report.problems}
    assert key in found and found[key].kind == "corrupt", [p.to_dict() for p in report.problems]
    assert found[key].affects, "what the record affects is named"


def test_a_flipped_metric_segment_is_never_a_wrong_value(pop: Populated) -> None:
    seg = pop.key_of["metric segment"]
    data = bytearray((pop.root / seg).read_bytes())
    i = data.index(pack(1.0)[1:])  # the float's bytes: flip its lowest bit, 1.0 -> 1.0000000000000002
    data[i + 7] ^= 0x01
    (pop.root / seg).write_bytes(bytes(data))
    with pytest.warns(DamagedRunWarning, match="metric"):
        view = pop.store.get_run(pop.open)
    # the writer's write-ahead log still holds the points: they are shown as logged
    assert [d.key for d in view.damaged] == [seg]
    assert [p[1] for p in view.points] == [1.0, 1.0] and view.metrics == {"acc": 1.0}
    assert view.params == {"p": "1"} and set(view.artifacts) == {"a.txt", "b.txt"}
    # without it (another machine, on a remote store), the damaged segment's points are missing, not wrong
    import shutil

    shutil.rmtree(pop.root / "wal")
    with pytest.warns(DamagedRunWarning, match="metric"):
        view = pop.store.get_run(pop.open)
    assert "acc" not in view.metrics and not view.points


def test_a_damaged_registry_version_is_refused_not_served(pop: Populated) -> None:
    key = pop.key_of["registry version"]
    data = (pop.root / key).read_bytes()
    i = data.index(b"runs:/x/m")
    pop.flip(key, i + 2)  # the source now reads "rtns:/x/m"
    with pytest.raises(CorruptRecordError, match=key):
        Registry(pop.store.backend).get_version("fraud", 1)


def test_records_written_before_checks_still_read_and_verify_counts_them(pop3: Populated) -> None:
    """An older casstore wrote records without `b3`: they read as before; verify counts them
    as unchecked (decoded and type-checked only), which is not a problem."""
    pop = pop3
    for key in pop.records():
        rec = unpack((pop.root / key).read_bytes())
        rec.pop(CHECK_FIELD)
        (pop.root / key).write_bytes(pack(rec))
    view = pop.store.get_run(pop.sealed)
    assert view.params == {"lr": "0.1"} and view.sealed and not view.damaged
    assert Registry(pop.store.backend).get_version("fraud", 1).source == "runs:/x/m"
    report = verify_store(pop.store)
    live = [k for k in pop.records() if not k.startswith(f"runs/{pop.deleted}/")]  # verify skips deleted runs
    assert report.ok and report.checked["records_unchecked"] == len(live)


def test_a_damaged_check_field_name_is_found_in_an_old_looking_record(pop: Populated) -> None:
    key = pop.key_of["param"]
    data = (pop.root / key).read_bytes()
    i = data.index(b"\xa2b3") + 1
    pop.flip(key, i)  # "b3" -> "c3": the record now looks like one written before checks
    with pytest.raises(CorruptRecordError, match="damaged check field"):
        decode_record((pop.root / key).read_bytes(), key)


def test_a_damaged_artifact_record_costs_that_artifact_only(pop: Populated) -> None:
    pop.flip(pop.key_of["artifact record"], 30)
    with pytest.warns(DamagedRunWarning, match=pop.key_of["artifact record"]):
        view = pop.store.get_run(pop.open)
    assert set(view.artifacts) == {"b.txt"} and view.artifact_damage("a.txt") is not None
    assert pop.store.artifact_bytes(pop.open, view.artifacts["b.txt"]) == b"b"


def test_a_damaged_seal_or_manifest_shows_what_verifies(pop: Populated) -> None:
    pop.flip(pop.key_of["seal"], 10)
    with pytest.warns(DamagedRunWarning, match="seal"):
        view = pop.store.get_run(pop.sealed)
    assert view.sealed and view.status == "FINISHED" and view.params == {"lr": "0.1"}
    assert [d.kind for d in view.damaged] == ["seal"]  # the one manifest that verifies is used


def test_a_damaged_meta_of_an_open_run_is_rebuilt_from_the_experiment_index(pop: Populated) -> None:
    pop.flip(pop.key_of["run meta"], 20)
    with pytest.warns(DamagedRunWarning, match="meta"):
        view = pop.store.get_run(pop.open)
    assert view.params == {"p": "1"} and set(view.artifacts) == {"a.txt", "b.txt"} and view.run_name == ""
    assert [d.key for d in view.damaged] == [pop.key_of["run meta"]]


def test_listings_skip_an_unreadable_run_with_a_warning_naming_it(pop: Populated) -> None:
    pop.flip(pop.key_of["run meta"], 20)
    pop.flip(pop.key_of["experiment index"], 20)  # nothing else says what the run is
    with pytest.warns(DamagedRunWarning, match=f"run {pop.open} is skipped"):
        views = pop.store.search_runs(None)
    assert [v.run_id for v in views] == [pop.sealed]
    with pytest.warns(DamagedRunWarning, match=pop.open):
        du = disk_usage(pop.store)
    assert du.unreadable_runs == [pop.open] and [r.run_id for r in du.runs] == [pop.sealed]
    r = CliRunner().invoke(cli, ["runs", "--json", "--store", str(pop.root)])
    assert r.exit_code == 0, r.output
    assert [x["run_id"] for x in json.loads(r.stdout)] == [pop.sealed]
    assert f"warning: run {pop.open} is skipped" in r.stderr


def test_a_run_that_cannot_be_read_can_still_be_deleted(pop: Populated) -> None:
    """So gc, which a damaged live run blocks, can be unblocked by giving that run up."""
    from casstore.maintenance.gc import collect_garbage

    pop.flip(pop.key_of["file artifact record"], 25)
    pop.flip(pop.key_of["run meta"], 20)
    pop.flip(pop.key_of["experiment index"], 20)
    assert not collect_garbage(pop.store.backend, grace=0).ok
    r = CliRunner().invoke(cli, ["delete-run", pop.open, "--reason", "damaged", "--store", str(pop.root)])
    assert r.exit_code == 0 and "cannot be read" in r.stderr
    r = CliRunner().invoke(cli, ["delete-run", pop.sealed, "--store", str(pop.root)])
    assert r.exit_code == 0, r.output
    assert collect_garbage(pop.store.backend, grace=0).ok


def test_verify_command_notes_records_without_their_own_check(pop3: Populated) -> None:
    r = CliRunner().invoke(cli, ["verify", "--all", "--store", str(pop3.root)])
    assert r.exit_code == 0 and r.stdout.startswith("OK: verified") and r.stderr == ""
    key = pop3.key_of["param"]
    rec = unpack((pop3.root / key).read_bytes())
    rec.pop(CHECK_FIELD)
    (pop3.root / key).write_bytes(pack(rec))
    r = CliRunner().invoke(cli, ["verify", "--all", "--store", str(pop3.root)])
    assert r.exit_code == 0 and r.stdout.startswith("OK: verified")
    assert "note: 1 record(s) were written by an older casstore" in r.stderr


def test_the_ui_runs_page_names_a_run_it_cannot_read(pop: Populated) -> None:
    """The runs table leaves an unreadable run out and says so on the page: which run, what is damaged."""
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from casstore.ui import create_app

    exp = pop.store.get_run(pop.sealed).experiment_id
    pop.flip(pop.key_of["run meta"], 20)
    pop.flip(pop.key_of["experiment index"], 20)
    with pytest.warns(DamagedRunWarning), TestClient(create_app(pop.store)) as c:
        page = c.get(f"/experiments/{exp}").text
    notice = page[page.index('class="error skipped-runs"'):]
    notice = notice[:notice.index("</div>")]
    assert "1 run of this experiment cannot be read" in notice and pop.open in notice
    assert "casstore verify --all" in notice and "meta" in notice  # what is damaged
    assert pop.sealed in page  # the readable run is in the table
