"""A writer killed (SIGKILL, a real process) while it creates, logs to, ends and resumes
runs loses nothing it acknowledged and leaves every run readable.

The child creates runs one after another: a param, five metric points, an inline and a
stored artifact, a tag, `end` (a local store of version 5 writes the seal, then removes
the records it holds), and for every other run `reopen_run`, more logging and a second
`end`. It prints each call once it returned and is killed at a seeded random moment.
Then every run it began reads; every acknowledged param, point and artifact is in it
(the artifacts read whole); a run left open is resumed and ended, keeping them; the
listing shows every run and `verify --all` finds nothing wrong.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from casstore.maintenance.verify import verify_store
from casstore.objects import open_store
from casstore.runs import RunStore

_CHILD = textwrap.dedent("""
    import random, sys
    from casstore.objects import open_store
    from casstore.runs import RunStore

    store = RunStore(open_store(sys.argv[1], create=True), metric_flush_points=3)
    exp = store.get_or_create_experiment("killed")
    rng = random.Random(int(sys.argv[2]))
    out = open(sys.argv[3], "w", buffering=1)
    i = 0
    while True:
        h = store.create_run(exp, run_name=f"r{i}")
        out.write(f"run {h.run_id}\\n")
        h.log_param("p", str(i)); out.write(f"param {h.run_id} p\\n")
        for s in range(5):
            h.log_metric("m", float(s), step=s); out.write(f"metric {h.run_id} {s}\\n")
        h.log_bytes("small.txt", b"x%d" % i); out.write(f"artifact {h.run_id} small.txt\\n")
        h.log_bytes("big.bin", rng.randbytes(200_000)); out.write(f"artifact {h.run_id} big.bin\\n")
        h.set_tag("t", "v")
        h.end()
        if i % 2 == 0:
            again = store.reopen_run(h.run_id)
            again.log_param("q", "1"); out.write(f"param {h.run_id} q\\n")
            again.log_metric("m", 9.0, step=9); out.write(f"metric {h.run_id} 9\\n")
            again.end()
        i += 1
""")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_writer_killed_while_ending_and_resuming_runs_loses_nothing_acknowledged(tmp_path: Path, seed: int) -> None:
    root, acks = tmp_path / "store", tmp_path / "acks"
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(root), str(seed), str(acks)])
    time.sleep(random.Random(seed).uniform(1.0, 2.5))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    expected: dict[str, dict[str, set[object]]] = {}
    for line in acks.read_text().splitlines():
        what, run_id, *rest = line.split()
        if what == "run":
            expected[run_id] = {"param": set(), "metric": set(), "artifact": set()}
        else:
            expected[run_id][what].add(int(rest[0]) if what == "metric" else rest[0])
    assert len(expected) >= 2, "the writer was killed before it ended a run"

    store = RunStore(open_store(str(root)))

    def check(run_id: str) -> bool:
        view = store.get_run(run_id)
        want = expected[run_id]
        assert want["param"] <= set(view.params), run_id
        assert want["metric"] <= {step for _, step, _ in view.metric_history("m")}, run_id
        assert want["artifact"] <= set(view.artifacts), run_id
        for path in want["artifact"]:
            store.artifact_bytes(run_id, view.artifacts[str(path)])  # verified whole
        return view.sealed

    for run_id in expected:
        if not check(run_id):
            store.open_run(run_id).end()  # an open run resumes and ends, keeping what it had
            assert check(run_id)
    assert set(expected) <= {v.run_id for v in store.search_runs(None)}
    report = verify_store(store)
    assert report.ok, report.problems[:3]
