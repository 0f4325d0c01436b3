"""A store for the UI's tests (in process and in a browser): three comparable runs with
histories and previewable artifacts, hostile strings everywhere a store holds text, a
deleted run, and a registered model with an alias."""

from __future__ import annotations

import random
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

HOSTILE = '<script>alert("x")</script>'


def png_bytes(width: int = 24, height: int = 16) -> bytes:
    """A small RGB PNG, written by hand (a gradient)."""
    rows = b"".join(b"\0" + b"".join(bytes((x * 10 % 256, y * 15 % 256, 128)) for x in range(width)) for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


@dataclass
class UIStore:
    path: Path
    experiment_id: str
    hostile_experiment_id: str
    runs: list[str]  # the three comparable runs, in the order they were made
    hostile_run: str
    deleted_run: str
    model_name: str
    big_digest: str  # weights.bin of runs[0], a file of several chunks


def make_ui_store(root: Path) -> UIStore:
    import casstore

    path = root / "store"
    client = casstore.Client(str(path))
    exp = client.create_experiment("fraud")
    runs = []
    for i, (c, solver) in enumerate([("0.1", "lbfgs"), ("1.0", "lbfgs"), ("10", "saga")]):
        run = client.create_run(exp, run_name=f"run-{i}", tags={"team": "risk", "mlflow.source.git.repoURL": "https://example.org/repo"})
        rid = run.info.run_id
        client.log_param(rid, "C", c)
        client.log_param(rid, "solver", solver)
        for step in range(40):
            client.log_metric(rid, "loss", 1.0 / (step + 1) + i * 0.05, step=step, timestamp=1_700_000_000_000 + step * 1000)
            client.log_metric(rid, "acc", 0.5 + step * 0.01 - i * 0.02, step=step, timestamp=1_700_000_000_000 + step * 1000)
        client.log_text(rid, "step,loss\n0,1.0\n1,0.5\n2,0.25\n", "data/curve.csv")
        client.log_text(rid, f"notes for run {i}\n", "notes.txt")
        client.log_dict(rid, {"C": c, "solver": solver}, "config.json")
        handle = client._handle(rid)
        handle.log_bytes("plots/sample.png", png_bytes())
        weights = random.Random(7).randbytes(3 << 20)  # several chunks
        handle.log_bytes("model/weights.bin", weights if i < 2 else weights[::-1])
        client.set_terminated(rid)
        runs.append(rid)
    big = client.get_run(runs[0])
    # hostile strings everywhere a store holds text
    hexp = client.create_experiment(HOSTILE)
    hrun = client.create_run(hexp, run_name=HOSTILE, tags={"note": HOSTILE, "link": "javascript:alert(1)"})
    hid = hrun.info.run_id
    client.log_param(hid, "payload", HOSTILE)
    client.log_metric(hid, "acc", 0.5)
    client.log_text(hid, HOSTILE + "\n", f"{HOSTILE}.txt")
    client.log_text(hid, "<html><body><script>parent.document.title='pwned'</script><p>report</p></body></html>", "report.html")
    client.log_text(hid, '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script><circle r="5"/></svg>', "figure.svg")
    client.log_text(hid, f"name,value\n{HOSTILE},1\n", "table.csv")
    client.set_terminated(hid)
    # a deleted run
    drun = client.create_run(exp, run_name="deleted-run")
    client.log_metric(drun.info.run_id, "acc", 0.1)
    client.set_terminated(drun.info.run_id)
    client.delete_run(drun.info.run_id)
    # a registered model with an alias moved once
    model_name = "fraud-model"
    _log_sklearn_model(client, exp, model_name)
    files = {p: a for p, a in client.store.get_run(runs[0]).artifacts.items()}
    return UIStore(path, exp, hexp, runs, hid, drun.info.run_id, model_name, files["model/weights.bin"].digest)


def _log_sklearn_model(client: object, exp: str, name: str) -> None:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    import casstore
    import casstore.sklearn

    old = casstore.get_tracking_uri()
    casstore.set_tracking_uri(client.tracking_uri)  # type: ignore[attr-defined]
    X = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [0.9, 0.1]])
    y = np.array([0, 1, 0, 1])
    try:
        for version in range(2):
            with casstore.start_run(experiment_id=exp, run_name=f"train-{version}"):
                casstore.log_param("C", 1.0 + version)
                casstore.sklearn.log_model(LogisticRegression(C=1.0 + version).fit(X, y), name="model",
                                           input_example=X[:2], registered_model_name=name)
        c = casstore.Client(client.tracking_uri)  # type: ignore[attr-defined]
        c.set_registered_model_alias(name, "champion", 1)
        c.set_registered_model_alias(name, "champion", 2)
    finally:
        casstore.set_tracking_uri(old)
