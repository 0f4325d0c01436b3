"""The issue's scripts run as written and print what they say."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _run_example(name: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASSTORE_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / name)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_models_registry_example(tmp_path: Path) -> None:
    out = _run_example("models_registry.py", tmp_path).splitlines()
    assert re.fullmatch(r"Model URI: runs:/[0-9a-f]{32}/iris_classifier", out[0]), out
    assert out[1] == "[0 0 0 0 0]"
    # the default store is ./casstore, and the registered version pins the rf model's entry
    import casstore

    client = casstore.Client(str(tmp_path / "casstore"))
    mv = client.get_model_version("production-classifier", 1)
    assert mv.source.startswith("runs:/") and mv.source.endswith("/rf_model")
    run = client.get_run(mv.run_id)
    assert run.info.status == "FINISHED" and run.info.digest


def test_iris_tracking_example_logs_a_loadable_model(tmp_path: Path) -> None:
    out = _run_example("iris_tracking.py", tmp_path)
    run_id = re.search(r"MLflow Run ID: ([0-9a-f]{32})", out)
    assert run_id, out
    import casstore.sklearn
    from casstore.tracking.uri import get_store

    model = casstore.sklearn.load_model(f"runs:/{run_id.group(1)}/iris_model", store=get_store(tmp_path / "casstore"))
    assert model.predict(np.array([[5.1, 3.5, 1.4, 0.2]])).tolist() == [0]
