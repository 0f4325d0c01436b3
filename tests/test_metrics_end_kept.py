"""Points a writer logged are kept whatever happens at the end of its run: a NaN value (a
diverging loss) is a point like any other when casstore checks that a seal holds them (never
reported lost when it is there), and an end that fails leaves the points it took kept."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

from casstore.exceptions import DamagedRunWarning
from casstore.runs import open_run_store


def test_a_nan_point_taken_into_another_ends_seal_is_not_reported_lost(tmp_path: Path) -> None:
    training = open_run_store(tmp_path / "s").create_run("0")
    training.log_metric("loss", 0.5, step=0)
    training.log_metric("loss", float("nan"), step=1)  # buffered, and in this writer's metric log
    # another process on this machine ends the run: its seal takes the points from the log
    digest = open_run_store(tmp_path / "s").open_run(training.run_id).end("KILLED")
    reader = open_run_store(tmp_path / "s")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DamagedRunWarning)  # the log's points are all in the seal
        view = reader.get_run(training.run_id)
    assert [p[2] for p in view.points] == [0, 1] and math.isnan(view.points[1][1])
    # the writer's end finds the seal; its buffered points are in it: no RunStateError
    assert training.end() == digest


_FAILED_END = textwrap.dedent("""
    import sys
    from casstore.exceptions import StoreFullError
    from casstore.runs import open_run_store

    store = open_run_store(sys.argv[1])
    h = store.open_run(sys.argv[2])
    for step in range(3):
        h.log_metric("loss", 1.0 / (step + 1), step=step)  # acknowledged: in this writer's log
    real = store.backend.put_if_absent
    def full(key, data):  # the disk fills up as the run ends
        if "/batch-" in key:
            raise StoreFullError("no space left on the store's disk")
        return real(key, data)
    store.backend.put_if_absent = full
    try:
        h.end()
    except StoreFullError:
        print("end failed", flush=True)
""")


def test_points_an_end_took_stay_when_the_end_fails_and_the_process_exits(tmp_path: Path) -> None:
    """A user's end_run fails (a full disk, an outage) and their script exits: the points the
    end took from the buffer were acknowledged, so they are kept (in the writer's log, said on
    exit), and the next end on this machine seals them."""
    store = open_run_store(tmp_path / "s")
    run_id = store.create_run("0").run_id
    child = subprocess.run([sys.executable, "-c", _FAILED_END, str(tmp_path / "s"), run_id], capture_output=True,
                           text=True, timeout=120)
    assert "end failed" in child.stdout, child.stderr[-2000:]
    assert child.returncode == 1 and "metric" in child.stderr  # the exit says the points could not be written
    reader = open_run_store(tmp_path / "s")
    assert sorted(p[2] for p in reader.get_run(run_id).points) == [0, 1, 2]
    reader.open_run(run_id).end()
    assert sorted(p[2] for p in open_run_store(tmp_path / "s").get_run(run_id).points) == [0, 1, 2]
