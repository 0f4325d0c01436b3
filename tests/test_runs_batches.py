"""Version-4 run records: one numbered batch per logging call, the param race across processes
(local and S3), fences, and what older stores keep writing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from s3_server import FaultProxy, S3Target
from tracking_helpers import REPO, old_store

from casstore.exceptions import ImmutableArtifactError, InvalidInputError, RunStateError
from casstore.maintenance.verify import verify_store
from casstore.runs import index, layout, open_run_store
from casstore.runs.batches import Batch, batch_key, batches_prefix
from casstore.runs.store import RunStore
from casstore.tracking.client import Client
from casstore.tracking.entities import Metric, Param, RunTag

PARAMS = {f"p{i}": str(i) for i in range(20)}
METRICS = [Metric(f"m{i}", i / 10, 0, 0) for i in range(10)]


def _run_keys(store: RunStore, run_id: str) -> list[str]:
    return sorted(k[len(layout.run_prefix(run_id)):] for k in store.backend.list(layout.run_prefix(run_id)))


def test_a_logging_call_is_one_batch_record_and_the_run_reads_back(tmp_path: Path) -> None:
    c = Client(str(tmp_path / "s"))
    run_id = c.create_run("0").info.run_id
    c.log_batch(run_id, metrics=METRICS, params=[Param(k, v) for k, v in PARAMS.items()],
                tags=[RunTag("team", "a"), RunTag("stage", "dev")])
    c.log_batch(run_id, params=[Param("p0", "0")], tags=[RunTag("stage", "prod")])  # p0 again: the same value
    c.log_metric(run_id, "loss", 0.5, step=3)
    # meta and two batches (the second holds only the tag); the point is buffered
    assert _run_keys(c.store, run_id) == ["batch-0000000001", "batch-0000000002", "meta"]
    c.set_terminated(run_id)
    # the closing batch (with the buffered point) and the seal were written; the seal holds everything,
    # so the rest is removed
    assert _run_keys(c.store, run_id) == ["seal"]
    run = c.get_run(run_id)
    assert run.data.params == PARAMS and run.data.tags["stage"] == "prod" and run.data.tags["team"] == "a"
    assert run.data.metrics == {**{m.key: m.value for m in METRICS}, "loss": 0.5}
    assert run.info.status == "FINISHED" and run.info.digest
    with pytest.raises(RunStateError, match="sealed"):
        c.log_param(run_id, "late", 1)


def test_a_param_bound_to_another_value_refuses_the_whole_batch(tmp_path: Path) -> None:
    store = open_run_store(tmp_path / "s")
    h = store.create_run("0")
    h.log_batch(params={"lr": "0.1"})
    with pytest.raises(ImmutableArtifactError, match="lr"):
        h.log_batch(params={"lr": "0.2", "other": "x"}, tags={"t": "1"})
    assert [k for k in _run_keys(store, h.run_id) if k.startswith("batch-")] == ["batch-0000000001"]
    with pytest.raises(InvalidInputError, match="twice"):
        Client(str(tmp_path / "s")).log_batch(h.run_id, params=[Param("a", "1"), Param("a", "2")])
    view = store.get_run(h.run_id)
    assert view.params == {"lr": "0.1"} and "t" not in view.tags


def test_readers_ignore_a_binding_an_earlier_batch_made_differently_and_batches_after_a_fence(tmp_path: Path) -> None:
    store = open_run_store(tmp_path / "s")
    h = store.create_run("0")
    h.log_param("lr", "0.1")
    # what a writer that does not check (or a service without atomic creates) could leave
    store.backend.put_if_absent(batch_key(h.run_id, 2), Batch(2, params={"lr": "9", "new": "1"}).to_bytes())
    store.backend.put_if_absent(batch_key(h.run_id, 3), Batch(3, close={"status": "KILLED", "end_time": 5}).to_bytes())
    store.backend.put_if_absent(batch_key(h.run_id, 4), Batch(4, params={"after": "1"}).to_bytes())
    assert store.get_run(h.run_id).params == {"lr": "0.1", "new": "1"}
    # the closing batch is there without its seal (an end that stopped): ending completes it, as it says
    other = store.open_run(h.run_id)
    digest = other.end("FINISHED")
    view = store.get_run(h.run_id)
    assert (view.status, view.end_time, view.digest) == ("KILLED", 5, digest)
    assert view.params == {"lr": "0.1", "new": "1"}


def test_a_damaged_batch_costs_what_it_holds_and_is_named(tmp_path: Path) -> None:
    from casstore.exceptions import CorruptRecordError, DamagedRunWarning

    store = open_run_store(tmp_path / "s")
    h = store.create_run("0")
    h.log_param("lr", "0.1")
    h.log_batch(params={"other": "1"}, tags={"t": "x"})
    path = tmp_path / "s" / batch_key(h.run_id, 1)
    path.write_bytes(path.read_bytes().replace(b"0.1", b"0.7"))
    with pytest.warns(DamagedRunWarning, match="batch-0000000001.*does not match its own BLAKE3"):
        view = store.get_run(h.run_id)
    assert view.params == {"other": "1"} and view.tags["t"] == "x"  # the rest of the run is shown
    assert [d.key for d in view.damaged] == [batch_key(h.run_id, 1)]
    # a writer cannot check its params or a fence against it: it refuses, naming it
    with pytest.raises(CorruptRecordError, match="batch-0000000001.*does not match its own BLAKE3"):
        store.open_run(h.run_id).log_param("lr", "0.2")


def test_a_deleted_open_run_is_fenced(tmp_path: Path) -> None:
    store = open_run_store(tmp_path / "s")
    h = store.create_run("0")
    h.log_param("a", "1")
    store.delete_run(h.run_id, "mistake")
    with pytest.raises(RunStateError, match="deleted"):
        h.log_param("b", "1")
    with pytest.raises(RunStateError, match="deleted"):
        h.end()
    assert store.get_run(h.run_id).deleted


def test_an_older_store_keeps_one_record_per_param_and_tag(tmp_path: Path) -> None:
    store = open_run_store(old_store(tmp_path / "s"))
    h = store.create_run("0")
    h.log_batch(params={"a": "1", "b": "2"}, tags={"t": "x"}, metrics=[("m", 1.0, 0, None)])
    digest = h.end()
    kinds = sorted({k.split("/")[0] for k in _run_keys(store, h.run_id)})
    assert not any(k.startswith("batch-") for k in kinds)
    assert kinds == ["closing", "manifests", "meta", "metrics", "params", "seal", "tags"]  # closing: see format.md
    assert store.backend.get(layout.manifest_key(h.run_id, digest))
    assert store.get_run(h.run_id).params == {"a": "1", "b": "2"}
    assert not list(store.backend.list("index/"))  # older stores publish no search index


# ---- the race, across processes ---------------------------------------------------------------------

_RACER = """
import os, sys, time
from casstore.exceptions import ImmutableArtifactError
from casstore.runs import open_run_store
url, run_id, me, go = sys.argv[1:5]
store = open_run_store(url)
h = store.open_run(run_id)
while not os.path.exists(go):
    time.sleep(0.005)
try:
    h.log_batch(params={f"k{i}": me for i in range(5)} | {"shared": "same"}, tags={"writer": me})
    print("WON", flush=True)
except ImmutableArtifactError as e:
    print("REFUSED", flush=True)
"""


def _race(url: str, run_id: str, tmp_path: Path, env: dict[str, str], n: int = 4) -> list[str]:
    go = tmp_path / f"go-{time.monotonic_ns()}"
    full_env = {**os.environ, **env, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, url, run_id, f"w{i}", str(go)], env=full_env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(n)]
    time.sleep(1.5)  # every writer opened the run and waits
    go.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    return [o.strip() for o, _ in outs]


def _check_one_winner(store: RunStore, run_id: str, outcomes: list[str]) -> None:
    assert sorted(outcomes) == ["REFUSED"] * (len(outcomes) - 1) + ["WON"]
    winner = f"w{outcomes.index('WON')}"
    view = store.get_run(run_id)
    assert view.params == {**{f"k{i}": winner for i in range(5)}, "shared": "same"}
    assert view.tags["writer"] == winner  # a refused batch wrote nothing, not even its tags
    batches = [k for k in store.backend.list(batches_prefix(run_id))]
    assert len(batches) == 1


def test_racing_processes_binding_a_param_differently_have_one_winner(tmp_path: Path) -> None:
    url = str(tmp_path / "s")
    store = open_run_store(url)
    for _ in range(2):
        run_id = store.create_run("0").run_id
        _check_one_winner(store, run_id, _race(url, run_id, tmp_path, {}))


def test_racing_processes_on_s3_have_one_winner(s3_env: S3Target, tmp_path: Path) -> None:
    url = s3_env.fresh_url("race")
    store = open_run_store(url)
    run_id = store.create_run("0").run_id
    _check_one_winner(store, run_id, _race(url, run_id, tmp_path, s3_env.env))


# ---- what a run costs on S3 ----------------------------------------------------------------------------


def test_a_run_on_s3_costs_at_most_ten_requests_and_reading_it_three(
    s3_env: S3Target, s3_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index, "COMPACT_EVERY", 10**9)  # compaction is counted apart (benchmarks)
    c = Client(s3_env.fresh_url("cost"), storage_options={"endpoint_url": s3_proxy.endpoint_url})
    exp = c.create_experiment("e")
    c.store.backend.put_if_absent("warm", b"")  # this process's one probe of conditional writes
    s3_proxy.reset_counts()
    run_id = c.create_run(exp, tags={"t1": "a"}).info.run_id
    c.log_batch(run_id, params=[Param(k, v) for k, v in PARAMS.items()])
    for m in METRICS:
        c.log_metric(run_id, m.key, m.value)
    c.log_batch(run_id, tags=[RunTag("t2", "b"), RunTag("t3", "c")])
    c.set_terminated(run_id)
    index.flush_pending()  # the run's summary, published within a second of its end, is part of its cost
    assert s3_proxy.count() <= 10, dict(s3_proxy.requests)
    s3_proxy.reset_counts()
    run = c.store.get_run(run_id)
    assert s3_proxy.count() <= 3 and run.params == PARAMS and run.sealed


# ---- upgrading a version-3 store --------------------------------------------------------------------------


def test_upgrade_converts_a_version_3_store_and_its_runs_keep_their_rules(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from casstore.cli import cli
    from casstore.objects.config import read_config

    url = old_store(tmp_path / "s")
    old = open_run_store(url)
    sealed = old.create_run("0", run_name="sealed")
    sealed.log_batch(params={"a": "1"}, tags={"t": "x"}, metrics=[("m", 1.0, 0, 5)])
    digest = sealed.end()
    still_open = old.create_run("0", run_name="open")
    still_open.log_batch(params={"lr": "0.1"}, tags={"stage": "dev"}, metrics=[("m", 2.0, 0, 5)])
    still_open.flush_metrics()
    gone = old.create_run("0", run_name="gone")
    old.delete_run(gone.run_id)
    # the old writer is still alive (it holds its metric log): the upgrade refuses, changing nothing
    r = CliRunner().invoke(cli, ["upgrade", "--store", url])
    assert r.exit_code == 1 and "a writer is active" in r.output and "nothing was changed" in r.output, r.output
    assert read_config(old.backend).version == 3 and not list(old.backend.list(batches_prefix(still_open.run_id)))
    still_open._flush_at_exit()  # its process exits, leaving the run open: its metric log is closed
    r = CliRunner().invoke(cli, ["upgrade", "--store", url])
    assert r.exit_code == 0, r.output
    # the sealed run's seal does not hold its manifest (version 3): it keeps its records
    assert ("from format version 3 to 6: 1 open run(s) given their batch record, 2 run(s) in the search index, "
            "0 sealed run(s) compacted") in r.output
    store = open_run_store(url)
    assert read_config(store.backend).version == 6 and store.batched and store.compacts
    assert store.get_run(sealed.run_id).digest == digest  # a sealed run is as it was
    h = store.open_run(still_open.run_id)
    with pytest.raises(ImmutableArtifactError, match="lr"):
        h.log_param("lr", "0.2")  # the param it had is checked by the new format's writers
    h.log_param("new", "1")
    h.end()
    view = store.get_run(still_open.run_id)
    assert view.params == {"lr": "0.1", "new": "1"} and view.tags["stage"] == "dev"
    assert [p[1] for p in view.points] == [2.0]  # its metric segment is read once, not twice
    got = {v.run_name for v in store.search_runs()}
    assert got == {"sealed", "open"} and store.index.last["runs_read"] == 1  # the index had the sealed run
    assert "meta" not in _run_keys(store, still_open.run_id)  # ended in the new format: its seal only
    assert verify_store(store).ok
    assert CliRunner().invoke(cli, ["upgrade", "--store", url]).exit_code != 0  # already version 6
