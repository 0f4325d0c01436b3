"""Metrics are never lost once `log_metric` returns: not when real processes exit without
ending their run (8 writers, local and S3: the flush runs before the S3 client's thread
pools shut down), not when they are SIGKILLed (each point is in the writer's write-ahead
log first: the next reader shows it, the next writer replays it, once), and a failure to
write them is a non-zero exit with the points kept, never a line on stderr alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from casstore.runs import open_run_store

CHILD = str(Path(__file__).with_name("metric_child.py"))


def spawn(url: str, run_id: str, n: int, mode: str, cache: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, CASSTORE_CACHE_DIR=str(cache))
    return subprocess.Popen([sys.executable, CHILD, url, run_id, str(n), mode], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def kill(p: subprocess.Popen[str]) -> None:
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=30)  # reaps it and closes the pipes


def points_of(url: str, run_id: str) -> Counter[tuple[float, int]]:
    view = open_run_store(url).get_run(run_id)
    return Counter((v, s) for k, v, s, _t in view.points if k == "m")


def wal_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


@pytest.mark.parametrize("where", ["local", "s3"])
def test_eight_writers_exiting_without_end_run_lose_nothing(where: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = str(tmp_path / "store") if where == "local" else request.getfixturevalue("s3_url")
    store = open_run_store(url)
    run_id = store.create_run("0").run_id
    procs = [spawn(url, run_id, 200, "exit", tmp_path / f"cache{i}") for i in range(8)]
    for p in procs:
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert "could not" not in err
    got = points_of(url, run_id)
    assert got == Counter({(float(i), i): 8 for i in range(200)})  # 1,600 points, none twice
    # every point is in a segment: the writers removed their logs
    assert not wal_files(tmp_path / "store" / "wal") and not [f for i in range(8) for f in wal_files(tmp_path / f"cache{i}")]


@pytest.mark.parametrize("where", ["local", "s3"])
def test_sigkilled_writers_points_are_read_then_replayed_once(where: str, tmp_path: Path, request: pytest.FixtureRequest,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    url = str(tmp_path / "store") if where == "local" else request.getfixturevalue("s3_url")
    cache = tmp_path / "cache"
    monkeypatch.setenv("CASSTORE_CACHE_DIR", str(cache))  # this process is on the same machine
    run_id = open_run_store(url).create_run("0").run_id
    procs = [spawn(url, run_id, 150, "hang", cache) for _ in range(3)]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "logged"
        kill(p)
    want = Counter({(float(i), i): 3 for i in range(150)})
    assert points_of(url, run_id) == want  # read from the logs the OS kept
    store = open_run_store(url)
    from casstore.runs.state import read_live_state

    in_segments = len(read_live_state(store.backend, run_id).points)  # written before the kill
    assert store.replay_dead_logs(run_id) == 450 - in_segments > 0
    assert store.replay_dead_logs(run_id) == 0  # replayed once, logs removed
    assert points_of(url, run_id) == want
    # what was replayed is in the store itself: a reader on another machine sees it too
    monkeypatch.setenv("CASSTORE_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert points_of(url, run_id) == want
    store.open_run(run_id).end()
    assert points_of(url, run_id) == want


@pytest.mark.parametrize("version", [3, 4], ids=["segments", "batches"])
def test_a_new_writer_replays_a_killed_ones_log_and_the_seal_holds_each_point_once(tmp_path: Path, version: int) -> None:
    """Both layouts: metric segments (version 3) and batch records (version 4) name the log
    range they carry, and the replay writes one that says so."""
    from tracking_helpers import old_store

    url = old_store(tmp_path / "store", version) if version < 4 else str(tmp_path / "store")
    run_id = open_run_store(url).create_run("0").run_id
    p = spawn(url, run_id, 100, "hang", tmp_path / "cache")
    assert p.stdout is not None and p.stdout.readline().strip() == "logged"
    kill(p)
    assert len(wal_files(tmp_path / "store" / "wal")) == 1
    h = open_run_store(url).open_run(run_id)  # the next writer replays the dead log
    assert not wal_files(tmp_path / "store" / "wal")
    from casstore.runs.state import read_live_state

    assert read_live_state(h.store.backend, run_id).covered  # what was written names its log range
    h.log_metric("m", 100.0, step=100)
    h.end()
    assert points_of(url, run_id) == Counter({(float(i), i): 1 for i in range(101)})


def test_a_failed_write_at_exit_is_a_non_zero_exit_and_the_points_are_kept(tmp_path: Path) -> None:
    url = str(tmp_path / "store")
    run_id = open_run_store(url).create_run("0").run_id
    p = spawn(url, run_id, 50, "fail", tmp_path / "cache")
    _out, err = p.communicate(timeout=60)
    assert p.returncode == 1
    assert "could not be written at exit" in err and "injected" in err
    assert points_of(url, run_id) == Counter({(float(i), i): 1 for i in range(50)})  # from the log


def test_a_failed_write_raises_in_the_caller(tmp_path: Path) -> None:
    from casstore.exceptions import StoreUnavailableError

    store = open_run_store(str(tmp_path / "store"))
    store.metric_flush_points = 3
    h = store.create_run("0")

    def refuse(*args: object, **kwargs: object) -> bool:
        raise StoreUnavailableError("injected")

    real = store.backend.put_if_absent
    store.backend.put_if_absent = refuse  # type: ignore[method-assign]
    h.log_metric("m", 1.0)
    h.log_metric("m", 2.0)
    with pytest.raises(StoreUnavailableError, match="injected"):
        h.log_metric("m", 3.0)  # the batch is due: written now, and the failure is the caller's
    store.backend.put_if_absent = real  # type: ignore[method-assign]
    h.end()
    assert [p[1] for p in store.get_run(h.run_id).points] == [1.0, 2.0, 3.0]
