"""A run whose writer was killed on one machine and that was resumed on another.

On a remote store a writer's metric log is on its own machine (under the cache
directory). Points it had not written to the store when it was killed (at most the
last few seconds of them) are in that log only: a writer on another machine cannot
see them. These tests pin down what happens then: the run resumed and ended elsewhere
lacks them, the machine that holds them says so when it reads the run, and resuming
the run there puts them into the run's next generation, once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import pytest

from casstore.exceptions import DamagedRunWarning
from casstore.runs import open_run_store

CHILD = str(Path(__file__).with_name("metric_child.py"))


def _points(url: str, run_id: str) -> Counter[tuple[float, int]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        view = open_run_store(url).get_run(run_id)
    return Counter((v, s) for k, v, s, _t in view.points if k == "m")


def test_points_left_in_a_killed_writers_log_come_back_on_its_machine(
        moto_s3: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from s3_server import S3Target

    assert isinstance(moto_s3, S3Target)
    for k, v in moto_s3.env.items():
        monkeypatch.setenv(k, v)
    url = moto_s3.fresh_url()
    first, other = tmp_path / "machine-a", tmp_path / "machine-b"
    run_id = open_run_store(url).create_run("0").run_id
    env = dict(os.environ, CASSTORE_CACHE_DIR=str(first))
    p = subprocess.Popen([sys.executable, CHILD, url, run_id, "50", "hang"], env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stdout.readline().strip() == "logged"
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=30)
    want = Counter({(float(i), i): 1 for i in range(50)})

    monkeypatch.setenv("CASSTORE_CACHE_DIR", str(other))  # resumed and ended on another machine
    open_run_store(url).open_run(run_id).end()
    elsewhere = _points(url, run_id)
    assert elsewhere != want  # the points only machine A holds are not in that seal

    monkeypatch.setenv("CASSTORE_CACHE_DIR", str(first))  # back on machine A
    with pytest.warns(DamagedRunWarning, match=r"metric point\(s\).*this machine.*not in its seal.*Resume the run on this machine"):
        open_run_store(url).get_run(run_id)
    store = open_run_store(url)
    store.reopen_run(run_id).end()
    assert _points(url, run_id) == want  # each point once
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is left behind to warn about
        assert open_run_store(url).get_run(run_id).sealed
    monkeypatch.setenv("CASSTORE_CACHE_DIR", str(other))
    assert _points(url, run_id) == want  # in the store: every machine sees them
