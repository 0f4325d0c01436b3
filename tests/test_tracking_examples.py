"""The examples run unchanged and print what they say."""

from __future__ import annotations

import re
from pathlib import Path

import casstore

from tracking_helpers import REPO, run_python, tracking  # noqa: F401  (fixture)

EXAMPLES = REPO / "examples"


def _run_example(name: str, cwd: Path) -> str:
    out = run_python(f"import runpy; runpy.run_path({str(EXAMPLES / name)!r}, run_name='__main__')", cwd=cwd,
                     timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_iris_tracking_example(tracking: str, tmp_path: Path) -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score
    from sklearn.model_selection import train_test_split

    stdout = _run_example("iris_tracking.py", tmp_path)
    m = re.fullmatch(
        r"MLflow Run ID: ([0-9a-f]{32})\nLogged Parameter C: 0\.1\nLogged Metric Accuracy: (\S+)\n", stdout
    )
    assert m, stdout
    X, y = load_iris(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=42)
    model = LogisticRegression(C=0.1, solver="lbfgs", random_state=42).fit(X_train, y_train)
    assert float(m.group(2)) == accuracy_score(y_test, model.predict(X_test))
    # the run is in the default store, ./casstore, sealed, with its model
    client = casstore.Client(str(tmp_path / "casstore"))
    run = client.get_run(m.group(1))
    assert run.info.status == "FINISHED" and run.info.run_name == "Iris Logistic Regression"
    assert run.data.params == {"C": "0.1", "solver": "lbfgs"}
    assert any(f.path == "iris_model" and f.is_dir for f in client.list_artifacts(m.group(1)))


def test_quickstart_example(tracking: str, tmp_path: Path) -> None:
    stdout = _run_example("quickstart.py", tmp_path)
    rid = re.search(r"run ([0-9a-f]{32}) FINISHED", stdout)
    assert rid, stdout
    assert re.search(r"run digest \(pins everything the run holds\): [0-9a-f]{64}", stdout)
    # log_dict writes YAML with sorted keys, as MLflow's; load_dict reads the mapping back
    assert "weights.bin" in stdout and "{'activation': 'relu', 'layers': [64, 32]}" in stdout
    run = casstore.Client(str(tmp_path / "casstore")).get_run(rid.group(1))
    assert run.data.params == {"lr": "0.01"} and run.data.metrics["loss"] == 0.2
