"""Fixtures and helpers shared by the runs, tracking and artifacts tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import casstore
from casstore.tracking import fluent, uri

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh local store as the tracking URI, in a fresh working directory; no run active."""
    monkeypatch.chdir(tmp_path)
    for var in ("CASSTORE_TRACKING_URI", "MLFLOW_TRACKING_URI", fluent.EXPERIMENT_NAME_ENV, fluent.EXPERIMENT_ID_ENV,
                "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID", "CASSTORE_RUN_ID"):
        monkeypatch.delenv(var, raising=False)
    fluent._reset()
    store = str(tmp_path / "store")
    casstore.set_tracking_uri(store)
    yield store
    while casstore.active_run() is not None:
        casstore.end_run()
    fluent._reset()
    uri._reset_tracking_uri()


def run_python(code: str, *args: str, cwd: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run Python code in a fresh interpreter that imports this checkout of casstore. MLflow's
    variables are left out unless ``env`` gives them (MLflow run in this process sets them)."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    full_env = {**inherited, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {})}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return path


def corrupt_artifact(store: object, run_id: str, path: str, at: int = 0) -> None:
    """Flip one byte of a run's artifact where its content is stored: in its binding record
    (or the batch record that bound it) for an inline artifact (the record stays valid
    msgpack), else in its first chunk (a chunk
    object, or its bytes in a pack)."""
    from casstore.objects.codec import pack, unpack
    from casstore.runs import layout

    entry = store.get_run(run_id).artifacts[path]  # type: ignore[attr-defined]
    root = Path(store.backend.root)  # type: ignore[attr-defined]
    if entry.inline and entry.batch:  # held in the batch record that bound it
        from casstore.runs.batches import batch_key

        target = root / batch_key(run_id, entry.batch)
        rec = unpack(target.read_bytes())
        for a in rec["artifacts"]:
            if a[0] == path:
                data = bytearray(a[5])
                data[at] ^= 0x01
                a[5] = bytes(data)
        target.write_bytes(pack(rec))
        return
    if entry.inline:
        target = root / layout.artifact_key(run_id, path)
        rec = unpack(target.read_bytes())
        data = bytearray(rec["data"])
        data[at] ^= 0x01
        target.write_bytes(pack({**rec, "data": bytes(data)}))
        return
    from layouts import chunk_site

    chunk = store.objects.chunk_digests(entry.digest)[0]  # type: ignore[attr-defined]
    site = chunk_site(store.objects, root, chunk)  # type: ignore[attr-defined]
    data = bytearray(site.read())
    data[at] ^= 0x01
    site.write(bytes(data))


def old_store(path: Path, version: int = 3) -> str:
    """A new local store of an older format version, as an older casstore made it."""
    from casstore.objects.config import CONFIG_KEY, StoreConfig

    path.mkdir(parents=True, exist_ok=True)
    (path / CONFIG_KEY).write_bytes(StoreConfig(version=version).to_json())
    return str(path)
