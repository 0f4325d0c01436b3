"""The search index: segments from concurrent writers, compaction, a missing, stale or damaged
index (answers still right), the SQL filters against the reference evaluator, paging, and
read-only searching on S3."""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from s3_server import FaultProxy, S3Target
from seaweed import ReadOnlyBucket
from tracking_helpers import REPO, old_store

import casstore
from casstore.cli import cli
from casstore.exceptions import InvalidInputError, StoreUnavailableError
from casstore.objects.codec import pack_checked
from casstore.runs import index, open_run_store, search
from casstore.runs.records import RunView
from casstore.runs.store import RunStore, run_value


def _segments(store: RunStore) -> list[str]:
    return sorted(store.backend.list(index.INDEX_PREFIX))


def _runs(store: RunStore, n: int, exp: str = "0", seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    ids = []
    for i in range(n):
        h = store.create_run(exp, run_name=f"r{i}", start_time=1000 + i)
        h.log_batch(params={"i": str(i), "solver": rng.choice(["lbfgs", "adam"])}, tags={"team": rng.choice("ab")},
                    metrics=[("acc", rng.random(), 0, 1)])
        h.end()
        index.flush_pending(store)  # a segment per run (a writer publishes a second's runs together)
        ids.append(h.run_id)
    return ids


def _fresh_reader(url: str) -> RunStore:
    """Another process's reader: its own cache of the index."""
    store = open_run_store(url)
    store.index.clear()
    return store


_WRITER = """
import sys
from casstore.runs import index, open_run_store
index.FAN_IN, index.COMPACT_EVERY = 4, 1
store = open_run_store(sys.argv[1])
for i in range(int(sys.argv[3])):
    h = store.create_run("0", run_name=f"{sys.argv[2]}-{i}")
    h.log_batch(params={"writer": sys.argv[2], "i": str(i)})
    h.end()
"""


def test_segments_from_concurrent_writers_merge_into_one_right_answer(tmp_path: Path) -> None:
    url = str(tmp_path / "s")
    open_run_store(url)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, url, f"w{w}", "12"], env=env,
                              stderr=subprocess.PIPE, text=True) for w in range(4)]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errs
    reader = _fresh_reader(url)
    runs = reader.search_runs(None, "params.writer = 'w2'", ["params.i DESC"])
    assert [v.params["i"] for v in runs] == sorted((str(i) for i in range(12)), reverse=True)
    assert len(reader.search_runs()) == 48
    assert reader.index.last["runs_read"] == 0  # every run came from the segments
    # compaction kept the segments few: at most FAN_IN - 1 per level, and some racing extras
    levels = [int(k.rsplit("/", 1)[-1].split("-")[0]) for k in _segments(reader)]
    assert max(levels) >= 1 and len(levels) < 20, levels


def test_compaction_merges_full_levels_and_keeps_every_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index, "COMPACT_EVERY", 10**9)
    store = open_run_store(tmp_path / "s")
    ids = _runs(store, 20)
    assert len(_segments(store)) == 20
    assert index.compact(store, fan_in=4) == 20  # a full level is merged into one segment of the next
    assert [k.rsplit("/", 1)[-1].split("-")[0] for k in _segments(store)] == ["1"]
    more = _runs(store, 4, seed=1)
    assert index.compact(store, fan_in=4) == 4
    assert sorted(k.rsplit("/", 1)[-1].split("-")[0] for k in _segments(store)) == ["1", "1"]
    ids += more
    reader = _fresh_reader(str(tmp_path / "s"))
    assert sorted(v.run_id for v in reader.search_runs()) == sorted(ids)
    assert reader.index.last["runs_read"] == 0


def test_a_missing_index_costs_reads_not_answers(tmp_path: Path) -> None:
    store = open_run_store(tmp_path / "s")
    ids = _runs(store, 10)
    want = [v.run_id for v in store.search_runs(None, "metrics.acc > 0.3", ["metrics.acc DESC"])]
    for key in _segments(store):
        store.backend.delete(key)
    reader = _fresh_reader(str(tmp_path / "s"))
    assert [v.run_id for v in reader.search_runs(None, "metrics.acc > 0.3", ["metrics.acc DESC"])] == want
    assert reader.index.last["runs_read"] == len(ids)
    # an open run is in no segment: read at every search, so it is never stale
    h = store.create_run("0", run_name="open")
    h.log_param("i", "99")
    assert [v.run_name for v in reader.search_runs(None, "params.i = '99'")] == ["open"]
    h.log_batch(metrics=[("acc", 0.99, 0, None)])  # written now (log_metric buffers)
    assert reader.search_runs(None, "params.i = '99'")[0].metrics == {"acc": 0.99}


def test_a_stale_or_lying_index_costs_reads_not_answers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = open_run_store(tmp_path / "s")
    a, b = _runs(store, 2)
    reader = _fresh_reader(str(tmp_path / "s"))
    assert len(reader.search_runs()) == 2
    # a deletion after the reader cached the run: published before the marker, so seen
    store.delete_run(a, "gone")
    assert [v.run_id for v in reader.search_runs()] == [b]
    assert [v.run_id for v in reader.search_runs(deleted=True)] == [a]
    # a segment claiming a deletion that never happened (its writer died before the marker)
    store.backend.put_if_absent(index.segment_key(0), pack_checked({"v": 1, "level": 0, "runs": [index.deletion_summary(b)]}))
    assert [v.run_id for v in reader.search_runs()] == [b]
    # a well-formed segment whose summary does not match the run (another run's digest, other params)
    lie = {**index.summary_of(store.get_run(b)), "params": {"i": "lie"}, "digest": "0" * 64}
    fresh = _fresh_reader(str(tmp_path / "s"))
    for key in _segments(store):
        store.backend.delete(key)
    store.backend.put_if_absent(index.segment_key(0), pack_checked({"v": 1, "level": 0, "runs": [lie]}))
    with caplog.at_level(logging.WARNING, logger="casstore.index"):
        got = fresh.search_runs()
    assert [(v.run_id, v.params["i"]) for v in got] == [(b, "1")]
    assert "does not match the run" in caplog.text
    assert fresh.search_runs(None, "params.i = 'lie'") == []


def test_a_damaged_segment_is_detected_and_its_runs_read_again(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index, "COMPACT_EVERY", 10**9)
    store = open_run_store(tmp_path / "s")
    ids = _runs(store, 4)
    victim = _segments(store)[1]
    path = tmp_path / "s" / victim
    path.write_bytes(path.read_bytes().replace(b"lbfgs", b"LBFGS").replace(b"adam", b"ADAM"))
    reader = _fresh_reader(str(tmp_path / "s"))
    with caplog.at_level(logging.WARNING, logger="casstore.index"):
        got = reader.search_runs(None, "params.solver LIKE '%a%'")
    assert reader.index.last["segments_damaged"] == 1 and reader.index.last["runs_read"] == 1
    assert "does not match its own BLAKE3" in caplog.text
    assert all(v.params["solver"] in ("lbfgs", "adam") for v in got)
    assert sorted(v.run_id for v in reader.search_runs()) == sorted(ids)
    index.compact(store, fan_in=2)  # the next compaction drops it
    assert victim not in _segments(store)


def test_a_damaged_local_cache_is_rebuilt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = open_run_store(tmp_path / "s")
    ids = _runs(store, 3)
    path = index._cache_path(store)
    assert path is not None and store.search_runs()
    store.index._db.close()  # type: ignore[union-attr]
    for suffix in ("-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)
    with open(path, "wb") as f:
        f.write(b"not a database" * 100)
    reader = open_run_store(tmp_path / "s")
    with caplog.at_level(logging.WARNING, logger="casstore.index"):
        assert sorted(v.run_id for v in reader.search_runs()) == sorted(ids)
    assert "unusable" in caplog.text


def test_an_older_store_is_searched_through_the_cache_and_sees_deletions(tmp_path: Path) -> None:
    url = old_store(tmp_path / "s")
    store = open_run_store(url)
    a, b = _runs(store, 2)
    reader = open_run_store(url)
    assert len(reader.search_runs()) == 2 and reader.index.last["runs_read"] == 2
    assert len(reader.search_runs()) == 2 and reader.index.last["runs_read"] == 0  # sealed runs: read once
    store.delete_run(a)
    assert [v.run_id for v in reader.search_runs()] == [b]


# ---- the SQL against the reference evaluator ---------------------------------------------------------

FILTERS = [
    "", "metrics.acc > 0.5", "metrics.acc != 0.5", "metrics.loss <= 1", "metrics.loss = 1", "params.solver = 'adam'",
    "params.solver != 'adam'", "params.solver LIKE 'a%'", "params.solver ILIKE 'A%'", "tags.team = 'a' AND metrics.acc < 0.7",
    "attributes.status = 'FINISHED'", "attributes.status IN ('KILLED', 'RUNNING')", "attributes.run_name NOT IN ('r1')",
    "attributes.start_time >= 1005", "attributes.end_time > 0", "tags.note LIKE '%_x%'", "params.i = '3'",
    "attributes.run_name LIKE 'r1%'", "attributes.digest != 'x'", "attributes.user_id = ''",
    "attributes.duration > 0",
]
ORDERS = [[], ["metrics.acc DESC"], ["metrics.loss ASC", "params.i DESC"], ["params.solver", "attributes.start_time ASC"],
          ["tags.note DESC"], ["attributes.end_time DESC"], ["attributes.run_name"],
          ["attributes.duration ASC"]]


def test_filters_and_ordering_agree_with_the_reference_evaluator(tmp_path: Path) -> None:
    store = open_run_store(tmp_path / "s")
    rng = random.Random(3)
    for i in range(40):
        h = store.create_run("0", run_name=f"r{i}", start_time=1000 + i % 13)
        metrics = [("acc", rng.choice([0.5, rng.random(), math.nan, math.inf]), 0, 1)]
        if i % 3:
            metrics.append(("loss", rng.choice([1.0, 2.0, -math.inf]), 0, 1))
        h.log_batch(params={"i": str(i), "solver": rng.choice(["adam", "lbfgs", "Adam"])},
                    tags={"team": rng.choice("ab"), **({"note": rng.choice(["_x", "ax", "x"])} if i % 2 else {})},
                    metrics=metrics)
        if i % 5:
            h.end(rng.choice(["FINISHED", "KILLED"]))
    full = [store.get_run(r) for r in store.list_run_ids()]
    for f in FILTERS:
        comparisons = search.parse_filter(f)
        for order in ORDERS:
            want = [v for v in full if search.matches(comparisons, functools.partial(run_value, v))]
            want.sort(key=lambda v: v.run_id)
            want.sort(key=lambda v: v.start_time, reverse=True)
            want = search.sort_items(want, search.parse_order_by(order), run_value)
            got = store.search_runs(None, f, order)
            assert [v.run_id for v in got] == [v.run_id for v in want], (f, order)


# ---- every run, and pages ----------------------------------------------------------------------------------


def test_search_without_max_results_returns_every_run_and_pages_follow_tokens(tmp_path: Path) -> None:
    store = open_run_store(tmp_path / "s")
    exp = store.get_or_create_experiment("many")
    for i in range(1100):
        store.create_run(exp, start_time=i).log_param("i", str(i))
    casstore.set_tracking_uri(str(tmp_path / "s"))
    try:
        assert len(casstore.search_runs(experiment_names=["many"])) == 1100
        c = casstore.MlflowClient()
        first = c.search_runs([exp])
        assert len(first) == 1000 and first.token  # MLflow's default page
        pages, token = [], None
        while True:
            page = c.search_runs([exp], "params.i LIKE '1%'", max_results=100, order_by=["params.i"], page_token=token)
            pages.append(page)
            token = page.token
            if token is None:
                break
        got = [r.data.params["i"] for p in pages for r in p]
        assert got == sorted(str(i) for i in range(1100) if str(i).startswith("1"))
        with pytest.raises(InvalidInputError, match="page_token"):
            c.search_runs([exp], "params.i = '1'", page_token=pages[0].token)
    finally:
        from casstore.tracking import fluent, uri

        fluent._reset()
        uri._reset_tracking_uri()  # as it was: later tests see no tracking URI of this one


# ---- read-only ------------------------------------------------------------------------------------------------


def test_reading_an_s3_store_sends_no_write_and_works_with_read_only_credentials(
    s3_env: S3Target, s3_proxy: FaultProxy, tmp_path: Path
) -> None:
    url = s3_env.fresh_url("ro")
    writer = open_run_store(url)
    ids = _runs(writer, 5, exp=writer.get_or_create_experiment("ro"))
    s3_proxy.deny_puts = True  # read-only credentials
    opts = ["--store", url]
    env = {"AWS_ENDPOINT_URL": s3_proxy.endpoint_url}
    runner = CliRunner()
    for args in (["runs"], ["runs", "--filter", "params.solver = 'adam'", "--json"], ["show", ids[0]],
                 ["verify", ids[1]], ["ls", ids[3]]):
        r = runner.invoke(cli, [*args, *opts], env=env)
        assert r.exit_code == 0, (args, r.output, r.stderr if r.stderr_bytes else "")
    reader = open_run_store(url, {"endpoint_url": s3_proxy.endpoint_url})
    assert sorted(v.run_id for v in reader.search_runs()) == sorted(ids)
    assert reader.get_run(ids[2]).params["i"] == "2"
    writes = sum(s3_proxy.count(m) for m in ("PUT", "POST", "DELETE", "COPY"))
    assert writes == 0, dict(s3_proxy.requests)
    assert s3_proxy.count() > 0


def test_read_only_credentials_on_seaweedfs_list_search_show_and_verify(s3_read_only: ReadOnlyBucket) -> None:
    writer = open_run_store(s3_read_only.url, s3_read_only.storage_options(s3_read_only.writer))
    ids = _runs(writer, 4, exp=writer.get_or_create_experiment("ro"))
    writer.delete_run(ids[3])
    env = {**os.environ, **s3_read_only.env(s3_read_only.reader)}

    def cli_run(*args: str) -> subprocess.CompletedProcess[str]:  # a process of its own: the reader's credentials
        return subprocess.run([sys.executable, "-m", "casstore.cli", *args, "--store", s3_read_only.url], env=env,
                              capture_output=True, text=True, timeout=120)

    out = cli_run("runs", "--filter", "params.i != '0'", "--json")
    assert out.returncode == 0, out.stderr
    assert sorted(r["run_id"] for r in json.loads(out.stdout)) == sorted(ids[1:3])
    for args in (["show", ids[0]], ["verify", ids[1]], ["ls", ids[2]], ["runs", "--deleted"]):
        r = cli_run(*args)
        assert r.returncode == 0, (args, r.stderr)
    reader = open_run_store(s3_read_only.url, s3_read_only.storage_options(s3_read_only.reader))
    assert [v.run_id for v in reader.search_runs(None, "params.i = '2'")] == [ids[2]]
    with pytest.raises(StoreUnavailableError, match="AccessDenied"):  # a write says why it cannot
        reader.create_run("0")


def test_a_resumed_run_is_read_again_until_its_new_summary(tmp_path: Path) -> None:
    store = open_run_store(tmp_path / "s")
    (a,) = _runs(store, 1)
    reader = _fresh_reader(str(tmp_path / "s"))
    assert [v.status for v in reader.search_runs()] == ["FINISHED"]
    h = store.reopen_run(a)
    h.log_param("later", "1")
    assert [(v.status, v.params.get("later")) for v in reader.search_runs()] == [("RUNNING", "1")]
    h.end("KILLED")
    index.flush_pending(store)
    assert [(v.status, v.params.get("later")) for v in reader.search_runs()] == [("KILLED", "1")]
    assert reader.index.last["runs_read"] == 0  # the new generation's summary, from its segment
