"""A NaN metric value (a diverging loss) is a point like any other when casstore checks that a
seal holds the points a writer logged: it is never reported lost when it is there."""

from __future__ import annotations

import math
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
