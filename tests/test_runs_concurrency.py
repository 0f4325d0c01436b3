"""Many writers on one run (guarantee 5) and a writer killed mid-run (guarantee 4)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from blake3 import blake3

import casstore
from casstore.exceptions import ImmutableArtifactError
from casstore.runs import open_run_store

from tracking_helpers import REPO, tracking  # noqa: F401  (fixture)


def test_threads_racing_on_one_path_have_exactly_one_winner(tmp_path: Path) -> None:
    store = open_run_store(tmp_path / "s")
    run_id = store.create_run("0").run_id
    n = 8
    barrier = threading.Barrier(n)
    won: list[str] = []
    lost: list[ImmutableArtifactError] = []

    def writer(i: int) -> None:
        h = store.open_run(run_id)  # a handle of its own, as another writer would have
        data = f"content of writer {i}".encode()
        barrier.wait()
        try:
            h.log_bytes("shared/result.txt", data)
            won.append(blake3(data).hexdigest())
        except ImmutableArtifactError as e:
            lost.append(e)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(lost) == n - 1
    bound = store.get_run(run_id).artifacts["shared/result.txt"].digest
    assert bound == won[0]
    assert all(e.existing == bound and e.new != bound for e in lost)


def test_threads_logging_identical_content_all_succeed(tmp_path: Path) -> None:
    store = open_run_store(tmp_path / "s")
    h = store.create_run("0")
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def writer() -> None:
        barrier.wait()
        try:
            h.log_bytes("same.txt", b"identical")
            h.log_param("p", "1")
        except BaseException as e:  # pragma: no cover - the assertion below reports it
            errors.append(e)

    threads = [threading.Thread(target=writer) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


_WRITER = r"""
import glob, os, sys, time
from casstore.runs import open_run_store
from casstore.exceptions import ImmutableArtifactError
store_path, run_id, go, content, n = sys.argv[1:6]
h = open_run_store(store_path).open_run(run_id)
open(f"{go}.ready{os.getpid()}", "w").close()
while not os.path.exists(go):
    time.sleep(0.001)
try:
    e = h.log_bytes("model/weights.bin", content.encode())
    print("WON", e.digest)
except ImmutableArtifactError as err:
    print("LOST", err.existing, err.new)
try:
    h.log_param("owner", content)
    print("PARAM", content)
except ImmutableArtifactError as err:
    print("PARAMLOST", err.existing, err.new)
open(f"{go}.done{os.getpid()}", "w").close()
while len(glob.glob(f"{go}.done*")) < int(n):    # every writer has tried before anyone ends
    time.sleep(0.001)
print("SEALED", h.end())
"""


def _start_together(go: Path, n: int) -> None:
    """Wait until ``n`` children are at the start line, then let them go at once."""
    deadline = time.monotonic() + 120
    while len(list(go.parent.glob(go.name + ".ready*"))) < n:
        assert time.monotonic() < deadline, "writers did not start"
        time.sleep(0.01)
    go.touch()


def _spawn(code: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=full_env)


@pytest.mark.parametrize("same_content", [False, True])
def test_processes_racing_on_one_path_have_exactly_one_winner(tmp_path: Path, same_content: bool) -> None:
    store = open_run_store(tmp_path / "s")
    run_id = store.create_run("0").run_id
    go = tmp_path / "go"
    contents = ["same" if same_content else f"writer-{i}" for i in range(4)]
    procs = [_spawn(_WRITER, str(tmp_path / "s"), run_id, str(go), c, str(len(contents))) for c in contents]
    _start_together(go, len(procs))
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outs.append(out.split())
    winners = [o for o in outs if o[0] == "WON"]
    param_winners = [o[o.index("PARAM") + 1] for o in outs if "PARAM" in o]
    seals = {o[o.index("SEALED") + 1] for o in outs}
    assert len(seals) == 1  # every writer that ended the run got the one seal
    view = store.get_run(run_id)
    assert view.digest in seals
    if same_content:
        assert len(winners) == 4 and len(param_winners) == 4  # identical content: every retry is a no-op
    else:
        assert len(winners) == 1
        bound = view.artifacts["model/weights.bin"].digest
        assert winners[0][1] == bound
        assert len(param_winners) == 1 and view.params["owner"] == param_winners[0]
        for o in outs:
            if o[0] == "LOST":
                assert o[1] == bound and o[2] != bound


_EXPERIMENT = r"""
import os, sys, time
from casstore.runs import open_run_store
store = open_run_store(sys.argv[1])
open(f"{sys.argv[2]}.ready{os.getpid()}", "w").close()
while not os.path.exists(sys.argv[2]):
    time.sleep(0.001)
print(store.get_or_create_experiment("shared-experiment"))
"""


def test_processes_creating_one_experiment_agree_on_its_id(tmp_path: Path) -> None:
    open_run_store(tmp_path / "s")
    go = tmp_path / "go"
    procs = [_spawn(_EXPERIMENT, str(tmp_path / "s"), str(go)) for _ in range(4)]
    _start_together(go, len(procs))
    ids = set()
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        ids.add(out.strip())
    assert len(ids) == 1
    store = open_run_store(tmp_path / "s")
    assert [e.experiment_id for e in store.list_experiments() if e.name == "shared-experiment"] == list(ids)


_CRASHING = r"""
import os, sys
import casstore as mlflow
mlflow.set_tracking_uri(sys.argv[1])
work = sys.argv[2]
with mlflow.start_run(run_name="doomed") as run:
    mlflow.log_param("lr", 0.1)
    for i in range(1500):                       # more than one metrics batch
        mlflow.log_metric("loss", 1.0 / (i + 1), step=i)
    for i in range(5):
        p = os.path.join(work, f"f{i}.bin")
        with open(p, "wb") as f:
            f.write(os.urandom(50_000 + i))
        mlflow.log_artifact(p, "early")
    print(run.info.run_id, flush=True)
    i = 0
    while True:                                 # keep writing until killed
        p = os.path.join(work, f"late{i}.bin")
        with open(p, "wb") as f:
            f.write(os.urandom(300_000))
        mlflow.log_artifact(p, "late")
        mlflow.log_metric("late", float(i), step=i)
        i += 1
"""


def test_run_killed_midway_can_be_read_listed_resumed_and_ended(tracking: str, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    child = _spawn(_CRASHING, tracking, str(work))
    assert child.stdout is not None
    run_id = child.stdout.readline().strip()
    assert len(run_id) == 32, child.stderr.read() if child.stderr else ""
    time.sleep(0.5)  # in the middle of logging late artifacts
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)  # reaps the child and closes its pipes
    assert child.returncode == -signal.SIGKILL

    run = casstore.get_run(run_id)  # readable
    assert run.info.status == "RUNNING" and run.info.digest is None
    assert run.data.params == {"lr": "0.1"} and run.data.tags["mlflow.runName"] == "doomed"
    assert len(casstore.get_metric_history(run_id, "loss")) >= 1000  # flushed batches survived
    assert run_id in [r.info.run_id for r in casstore.search_runs(filter_string="params.lr = '0.1'", output_format="list")]  # listed
    early = casstore.list_artifacts(run_id, "early")
    assert [f.path for f in early] == [f"early/f{i}.bin" for i in range(5)]
    dst = casstore.artifacts.download_artifacts(run_id=run_id, dst_path=tmp_path / "dl")  # every byte verifies
    for f in early:
        assert (Path(dst) / f.path).read_bytes() == (work / Path(f.path).name).read_bytes()

    with casstore.start_run(run_id=run_id):  # resumed
        casstore.log_param("resumed", "yes")
        casstore.log_metric("after", 1.0)
    ended = casstore.get_run(run_id)
    assert ended.info.status == "FINISHED" and ended.info.digest is not None
    assert ended.data.params["resumed"] == "yes" and ended.data.metrics["after"] == 1.0
    with pytest.raises(casstore.exceptions.RunStateError, match="sealed"):
        casstore.MlflowClient().log_param(run_id, "late", "x")  # ended: writes need a resume first
