"""A write that returned is in the run's seal, even when another process ends the run at
that moment.

One process logs artifacts and models into an open run as fast as it can, printing each
call that returned; another ends the run. The end lists the run, writes its closing batch,
then its seal from that listing: a binding made after the listing is not in the seal, and
the writer that made it must hear so (`RunStateError`), never return as if it were kept.
"""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from casstore.objects import StoreConfig, open_store
from casstore.objects.config import CONFIG_KEY
from casstore.runs import RunStore

_WRITER = textwrap.dedent("""
    import os, sys
    from casstore.exceptions import RunStateError
    from casstore.objects import open_store
    from casstore.runs import RunStore

    store = RunStore(open_store(sys.argv[1]))
    h = store.open_run(sys.argv[2])
    out = open(sys.argv[3], "w", buffering=1)
    key = sys.argv[5] if len(sys.argv) > 5 else "m"
    weights = store.objects.put_bytes(os.urandom(5_000))
    out.write("ready\\n")
    i = 0
    try:
        while True:
            if sys.argv[4] == "metrics":  # a point is acknowledged once its flush returned
                h.log_metric(key, float(i), step=i); h.flush_metrics(); out.write(f"metric {i}\\n"); i += 1
                continue
            if sys.argv[4] != "models":
                h.log_bytes(f"a{i}.bin", os.urandom(20_000 + i)); out.write(f"artifact a{i}.bin\\n")
            if i % 4 == 0 or sys.argv[4] == "models":
                h.add_model(f"m{i}", {"v": 1, "kind": "model", "name": f"m{i}", "run_id": h.run_id, "created": "",
                                      "flavors": {"x": {}}, "files": {"w": {"digest": weights.digest, "size": 5_000}}})
                out.write(f"model m{i}\\n")
            i += 1
    except RunStateError as e:
        out.write("refused " + " ".join(str(e).split()) + "\\n")
""")


def _race(root: Path | str, acks: Path, pause: float, what: str = "both", version: int | None = None,
          writers: int = 1) -> None:
    """Run ``writers`` writer processes logging ``what`` into one run, end the run after
    ``pause`` seconds (once: the end must succeed on its first call), and check that every
    call a writer saw return is in the seal and that each writer was told the run ended."""
    if version is not None:  # as an older casstore made it
        Path(root).mkdir(parents=True)
        (Path(root) / CONFIG_KEY).write_bytes(StoreConfig(version=version).to_json())
    store = RunStore(open_store(str(root), create=True))
    run_id = store.create_run(store.get_or_create_experiment("race")).run_id
    ack_files = [acks.with_name(f"{acks.name}-{w}") for w in range(writers)]
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(root), run_id, str(a), what, f"m{w}"])
             for w, a in enumerate(ack_files)]
    try:
        for a, writer in zip(ack_files, procs):
            while not a.exists() or not a.read_text().startswith("ready"):
                assert writer.poll() is None, "a writer exited before it was ready"
                time.sleep(0.01)
        time.sleep(pause)
        RunStore(open_store(str(root))).open_run(run_id).end()
        for writer in procs:
            assert writer.wait(timeout=60) == 0
    finally:
        for writer in procs:
            if writer.poll() is None:
                writer.kill()
                writer.wait()
    view = RunStore(open_store(str(root))).get_run(run_id)
    assert view.sealed
    total = 0
    for w, a in enumerate(ack_files):
        lines = a.read_text().splitlines()
        assert lines[-1].startswith("refused"), lines[-1]  # the writer was told the run ended
        returned = {line.split()[1] for line in lines if line.startswith("artifact")}
        models = {line.split()[1] for line in lines if line.startswith("model")}
        if what == "metrics":
            flushed = {int(line.split()[1]) for line in lines if line.startswith("metric ")}
            sealed = {int(p[2]) for p in view.points if p[0] == f"m{w}"}
            assert flushed <= sealed, sorted(flushed - sealed)  # (a writer may have won no number before the end)
            total += len(flushed)
            continue
        assert returned or what == "models"
        assert returned <= set(view.artifacts), sorted(returned - set(view.artifacts))
        assert models <= set(view.models), sorted(models - set(view.models))
    assert total or what != "metrics"  # the writers had flushed points before the end


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_binding_that_returned_is_in_the_seal_of_a_run_ended_meanwhile(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    for i in range(3):
        _race(tmp_path / f"store{i}", tmp_path / f"acks{i}", rng.uniform(0.1, 0.5))


@pytest.mark.slow
def test_every_binding_that_returned_is_in_the_seal_on_s3(s3_url: str, tmp_path: Path) -> None:
    """On S3 (a packs store: artifacts are bound in batch records, models in records of their own)."""
    for i in range(3):
        _race(f"{s3_url}/r{i}", tmp_path / f"acks{i}", 1.0 + 0.5 * i, "models")


@pytest.mark.parametrize("seed", [1, 2])
def test_every_binding_that_returned_is_in_the_seal_in_a_version_3_store(tmp_path: Path, seed: int) -> None:
    """A version-3 store (records of their own, no batch records): the end writes its closing
    marker before it lists the run, and a writer that finds the marker after binding waits
    for the seal (or completes the end) and checks it."""
    rng = random.Random(seed)
    for i in range(3):
        _race(tmp_path / f"store{i}", tmp_path / f"acks{i}", rng.uniform(0.1, 0.5), version=3)


@pytest.mark.parametrize("version", [None, 3], ids=["current", "version-3"])
def test_every_metric_flush_that_returned_is_in_the_seal(tmp_path: Path, version: int | None) -> None:
    """A writer flushing metric points one by one (a batch per point, back to back) while
    another process ends the run: the end succeeds at its first call, and each point whose
    flush returned is in the seal (in a version-3 store, a metric segment written after the
    end listed the run is found by its closing marker)."""
    rng = random.Random(7)
    for i in range(3):
        _race(tmp_path / f"store{i}", tmp_path / f"acks{i}", rng.uniform(0.1, 0.4), "metrics", version=version)


@pytest.mark.parametrize("writers", [2, 3])
def test_an_end_beside_writers_appending_back_to_back_succeeds_at_once(tmp_path: Path, writers: int) -> None:
    """Several processes each append a batch per point with no pause: every number the end
    listed is taken again and again before it can create the next one; its closing batch
    still lands at its first call (it tries the next free numbers, with no listing between),
    and every point a writer saw flushed is in the seal."""
    for i in range(2):
        _race(tmp_path / f"store{i}", tmp_path / f"acks{i}", 0.2 + 0.3 * i, "metrics", writers=writers)


@pytest.mark.slow
def test_an_end_beside_writers_appending_back_to_back_on_s3(s3_url: str, tmp_path: Path) -> None:
    """The same on S3 (moto and SeaweedFS): conditional PUTs number the batches."""
    _race(f"{s3_url}/r", tmp_path / "acks", 1.0, "metrics", writers=3)
