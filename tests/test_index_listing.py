"""An experiment's runs as a search lists them on S3 (store format 6): a warm reader lists only
the entries named after the point its cache has passed, and still never misses a run: runs
of writers whose clock is behind, resumed runs, runs of older casstore made before an
upgrade, runs of concurrent writers. Requests are counted at a proxy, never timed."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from s3_server import FaultProxy, S3Target
from tracking_helpers import REPO

from casstore.backend import open_backend
from casstore.objects.config import CONFIG_KEY, StoreConfig, read_config
from casstore.runs import index, layout, open_run_store
from casstore.runs import store as run_store_module
from casstore.runs.store import RunStore


def _run(store: RunStore, exp: str, name: str) -> str:
    h = store.create_run(exp, run_name=name)
    h.log_batch(params={"name": name})
    h.end()
    return h.run_id


def _names(store: RunStore, exp: str) -> list[str]:
    return sorted(v.run_name for v in store.search_runs([exp]))


def _reader(url: str, proxy: FaultProxy | None = None) -> RunStore:
    """Another machine's reader, with an empty cache."""
    store = open_run_store(url, {"endpoint_url": proxy.endpoint_url} if proxy else None)
    store.index.clear()
    return store


def _cutoff(reader: RunStore, exp: str) -> str:
    row = reader.index._connect().execute("SELECT after FROM listings WHERE experiment_id = ?", (exp,)).fetchone()
    assert row is not None, "the reader keeps no point to list after"
    return str(row[0])


@pytest.fixture(autouse=True)
def _experiment_state_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """A search asks whether its experiment is deleted (a LIST), and keeps an answer of active
    for ACTIVE_FOR seconds: kept here for the whole test, so that a slow test counts the same."""
    monkeypatch.setattr(run_store_module, "ACTIVE_FOR", 3600.0)


def _entry_lists(proxy: FaultProxy, reader: RunStore, exp: str) -> int:
    """How many LISTs of the experiment's run entries a search sends (every LIST but the one
    of the index's segments: the proxy counts LISTs under no area, as they name a prefix in
    their query). Whether the experiment is deleted is asked before, and not counted."""
    assert reader.experiment_is_active(exp)
    before = proxy.count("GET", "")
    _names(reader, exp)
    return proxy.count("GET", "") - before - 1


def test_entries_are_named_by_time_and_parse() -> None:
    run_id = layout.new_run_id()
    assert uuid.UUID(run_id).version == 4  # run ids stay random: short prefixes tell runs apart
    early = layout.experiment_entry_key("7", run_id, at=1_700_000_000.0).rsplit("/", 1)[-1]
    late = layout.experiment_entry_key("7", run_id, at=1_700_000_000.002).rsplit("/", 1)[-1]
    assert early < late and uuid.UUID(early[:32]).version == 7
    assert layout.entry_time(early) == 1_700_000_000.0 and layout.entry_time(run_id) is None
    assert layout.time_prefix(1_700_000_000.0) == early[:12] < late
    resumed = layout.experiment_entry_key("7", run_id, 3, at=1_800_000_000.0).rsplit("/", 1)[-1]
    assert resumed > late and layout.entry_time(resumed) == 1_800_000_000.0
    assert layout.parse_entry(run_id) == (run_id, 0)  # the entry before version 6
    assert layout.parse_entry(f"{run_id}.g00000002") == (run_id, 2)  # every version writes it when resumed
    assert layout.parse_entry(early) == (run_id, 0) and layout.parse_entry(resumed) == (run_id, 3)
    assert layout.parse_entry("meta") is None and layout.parse_entry(run_id + ".x") is None


def _entries(store: RunStore, exp: str, run_id: str) -> list[str]:
    """The keys of the entries in ``exp`` that name ``run_id`` as added (not resumed)."""
    return [k for k in store.backend.list(layout.experiment_runs_prefix(exp))
            if layout.parse_entry(k.rsplit("/", 1)[-1]) == (run_id, 0)]


def test_a_warm_search_lists_only_new_entries_in_one_request_and_sees_every_new_run(
    s3_env: S3Target, s3_proxy: FaultProxy
) -> None:
    url = s3_env.fresh_url("warm")
    writer = open_run_store(url)
    exp = writer.get_or_create_experiment("e")
    assert read_config(writer.backend).version == 6
    first = [_run(writer, exp, f"a{i}") for i in range(20)]
    index.flush_pending(writer)  # (a search reads a run no segment summarises: LISTs of its own)
    reader = _reader(url, s3_proxy)
    assert _entry_lists(s3_proxy, reader, exp) == 16  # cold: every entry, 16 listings at once
    s3_proxy.reset_counts()
    assert _names(reader, exp) == sorted(f"a{i}" for i in range(20))
    assert s3_proxy.count() == s3_proxy.count("GET", "") == 2  # warm, nothing new: the newest entries, the segments
    more = [_run(writer, exp, f"b{i}") for i in range(3)]
    index.flush_pending(writer)
    assert _entry_lists(s3_proxy, reader, exp) == 1
    assert _names(reader, exp) == sorted([f"a{i}" for i in range(20)] + ["b0", "b1", "b2"])
    assert sorted(v.run_id for v in reader.search_runs([exp])) == sorted(first + more)
    oldest = min(k.rsplit("/", 1)[-1] for r in first for k in _entries(writer, exp, r))
    assert _cutoff(reader, exp) < oldest  # the newest entries: named within the note window of the newest


def _an_hour_behind(monkeypatch: pytest.MonkeyPatch, make: Callable[[], str]) -> str:
    """What ``make`` returns, with the first entry it names named an hour before the service's
    clock (a writer that named it by its own clock, an hour behind)."""
    real = layout.experiment_entry_key
    calls: list[str] = []

    def behind(exp: str, run_id: str, generation: int = 0, at: float | None = None) -> str:
        calls.append(run_id)
        return real(exp, run_id, generation, (at or time.time()) - (3600 if len(calls) == 1 else 0))

    monkeypatch.setattr(layout, "experiment_entry_key", behind)
    try:
        return make()
    finally:
        monkeypatch.setattr(layout, "experiment_entry_key", real)


def test_a_run_named_by_a_clock_behind_is_noted_and_a_warm_reader_sees_it(
    s3_env: S3Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = s3_env.fresh_url("skew")
    writer = open_run_store(url)
    exp = writer.get_or_create_experiment("e")
    _run(writer, exp, "before")
    reader = _reader(url)
    assert _names(reader, exp) == ["before"]
    late = _an_hour_behind(monkeypatch, lambda: _run(writer, exp, "late"))
    first, note = sorted(k.rsplit("/", 1)[-1] for k in _entries(writer, exp, late))
    assert first < _cutoff(reader, exp) < note  # its entry is where the reader no longer lists,
    assert _names(reader, exp) == ["before", "late"]  # yet it sees the run: its writer noted it
    assert _names(_reader(url), exp) == ["before", "late"]  # and a cold reader counts it once
    on_time = _run(writer, exp, "on time")
    assert len(_entries(writer, exp, on_time)) == 1  # a run named in time gets no note


def test_a_run_resumed_after_its_summary_was_cached_is_read_again_by_a_warm_reader(
    s3_env: S3Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = s3_env.fresh_url("resume")
    writer = open_run_store(url)
    exp = writer.get_or_create_experiment("e")
    real = layout.new_run_id
    monkeypatch.setattr(layout, "new_run_id", lambda: "f" + real()[1:])  # its `.g` entry sorts past every time name
    run_id = _an_hour_behind(monkeypatch, lambda: _run(writer, exp, "r"))  # an old run
    monkeypatch.setattr(layout, "new_run_id", real)
    index.flush_pending(writer)
    reader = _reader(url)
    assert [v.status for v in reader.search_runs([exp])] == ["FINISHED"]
    h = writer.reopen_run(run_id)
    h.log_param("later", "1")
    assert [(v.status, v.params.get("later")) for v in reader.search_runs([exp])] == [("RUNNING", "1")]
    h.end("KILLED")
    index.flush_pending(writer)
    assert [(v.status, v.params.get("later")) for v in reader.search_runs([exp])] == [("KILLED", "1")]


def test_runs_of_an_older_version_are_all_listed_and_after_the_upgrade_listed_once(
    s3_env: S3Target, s3_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = s3_env.fresh_url("v5")
    # an older casstore's store: version 5, run ids at random
    assert open_backend(url).put_if_absent(CONFIG_KEY, StoreConfig(version=5).to_json())
    old = open_run_store(url)
    assert read_config(old.backend).version == 5
    exp = old.get_or_create_experiment("e")
    old_ids = [_run(old, exp, f"old{i}") for i in range(12)]
    index.flush_pending(old)
    assert all(_entries(old, exp, r) == [layout.experiment_run_key(exp, r)] for r in old_ids)  # named by id
    reader = _reader(url, s3_proxy)
    for _ in range(2):  # a version-5 store may have older writers: every search lists every entry
        assert _entry_lists(s3_proxy, reader, exp) == 16
    from casstore.maintenance.upgrade import upgrade_store

    assert upgrade_store(open_run_store(url)).to_version == 6
    new = open_run_store(url)
    new_id = _run(new, exp, "new")
    index.flush_pending(new)
    reader = _reader(url, s3_proxy)
    assert _entry_lists(s3_proxy, reader, exp) == 16
    assert _entry_lists(s3_proxy, reader, exp) == 1
    assert sorted(v.run_id for v in reader.search_runs([exp])) == sorted([*old_ids, new_id])


_WRITER = """
import sys
from casstore.runs import open_run_store
store = open_run_store(sys.argv[1])
for i in range(int(sys.argv[3])):
    h = store.create_run(sys.argv[4], run_name=f"{sys.argv[2]}-{i}")
    h.log_batch(params={"writer": sys.argv[2]})
    if i % 3:
        h.end()  # the others stay open, as a writer that crashed leaves them
"""


def test_concurrent_writers_and_a_warm_reader_searching_meanwhile_agree_with_a_cold_reader(s3_env: S3Target) -> None:
    url = s3_env.fresh_url("race")
    exp = open_run_store(url).get_or_create_experiment("e")
    reader = _reader(url)
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, url, f"w{w}", "8", exp], cwd=REPO) for w in range(3)]
    seen: set[str] = set()
    while any(p.poll() is None for p in procs):
        seen |= set(_names(reader, exp))
    assert all(p.wait() == 0 for p in procs)
    want = sorted(f"w{w}-{i}" for w in range(3) for i in range(8))
    assert seen <= set(want)
    assert _names(reader, exp) == want
    assert _names(_reader(url), exp) == want


def test_a_warm_reader_with_a_missing_index_still_answers_right(s3_env: S3Target) -> None:
    url = s3_env.fresh_url("noindex")
    writer = open_run_store(url)
    exp = writer.get_or_create_experiment("e")
    _run(writer, exp, "a")
    reader = _reader(url)
    assert _names(reader, exp) == ["a"]
    index.flush_pending(writer)
    for key in list(writer.backend.list(index.INDEX_PREFIX)):
        writer.backend.delete(key)
    h = writer.create_run(exp, run_name="open")
    _run(writer, exp, "b")
    for key in list(writer.backend.list(index.INDEX_PREFIX)):
        writer.backend.delete(key)
    assert _names(reader, exp) == ["a", "b", "open"]  # read from the runs themselves
    h.end("FAILED")
    assert [(v.run_name, v.status) for v in reader.search_runs([exp], "attributes.status = 'FAILED'")] == [("open", "FAILED")]


def test_warm_and_cold_searches_of_an_experiment_send_no_write(s3_env: S3Target, s3_proxy: FaultProxy) -> None:
    url = s3_env.fresh_url("ro")
    writer = open_run_store(url)
    exp = writer.get_or_create_experiment("e")
    ids = [_run(writer, exp, f"r{i}") for i in range(4)]
    s3_proxy.deny_puts = True  # read-only credentials
    reader = _reader(url, s3_proxy)
    for _ in range(2):
        assert sorted(v.run_id for v in reader.search_runs([exp])) == sorted(ids)
    assert sum(s3_proxy.count(m) for m in ("PUT", "POST", "DELETE", "COPY")) == 0


def test_a_local_store_lists_every_entry_and_keeps_no_point(tmp_path: Any) -> None:
    store = open_run_store(tmp_path / "s")
    exp = store.get_or_create_experiment("e")
    _run(store, exp, "a")
    assert _names(store, exp) == ["a"] and store.backend.server_time() is None
    assert store.index._connect().execute("SELECT count(*) FROM listings").fetchone()[0] == 0


def test_an_empty_experiment_is_listed_in_full_once_and_its_first_run_is_still_seen(
    s3_env: S3Target, s3_proxy: FaultProxy
) -> None:
    """An experiment with no run yet (``Default``, often) has no entry whose time could mark
    a point: the listing's own start on the service's clock does, so a warm reader lists it
    with one request, not 16 at every search and at every view of the UI's home page."""
    url = s3_env.fresh_url("empty")
    writer = open_run_store(url)
    exp = writer.get_or_create_experiment("e")
    reader = _reader(url, s3_proxy)
    assert _entry_lists(s3_proxy, reader, exp) == 16  # cold: every entry, 16 listings at once
    assert _entry_lists(s3_proxy, reader, exp) == 1
    first = _run(writer, exp, "first")
    index.flush_pending(writer)
    assert _entry_lists(s3_proxy, reader, exp) == 1
    assert _names(reader, exp) == ["first"] and reader.listed_run_ids(exp) == [first]
