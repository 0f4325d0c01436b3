"""Scripts in the shape of MLflow's documentation and examples (examples/mlflow/) run with
only their imports changed: under casstore as they are, and, the imports turned back, under
MLflow, printing the same results."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import casstore

from tracking_helpers import REPO, run_python

EXAMPLES = sorted((REPO / "examples" / "mlflow").glob("*.py"))
#: what differs between the two runs by nature: run ids, and MLflow 3's model ids
_IDS = [(re.compile(r"models:/m-[0-9a-f]{32}|runs:/[0-9a-f]{32}/\w+"), "<model uri>"), (re.compile(r"[0-9a-f]{32}"), "<id>")]


def as_mlflow(source: str) -> str:
    """The script with its imports turned back into MLflow's: the only lines that differ."""
    out = []
    for line in source.splitlines():
        if line == "import casstore as mlflow":
            line = "import mlflow"
        elif line.startswith("from casstore"):
            line = "from mlflow" + line[len("from casstore"):]
        out.append(line)
    return "\n".join(out) + "\n"


def normalized(stdout: str) -> str:
    for pattern, stand_in in _IDS:
        stdout = pattern.sub(stand_in, stdout)
    return stdout


def _run_all(scripts: list[Path], cwd: Path, env: dict[str, str], module: str) -> dict[str, str]:
    """Run each script as __main__ in one interpreter (imports paid once), ending any run a
    script left active as its process's exit would; each one's output, by name."""
    code = "\n".join([
        f"import io, runpy, contextlib, json, os, warnings, {module} as m",
        "warnings.simplefilter('ignore')",
        "outs = {}",
        f"for path in {[str(s) for s in scripts]!r}:",
        "    buf = io.StringIO()",
        "    with contextlib.redirect_stdout(buf):",
        "        runpy.run_path(path, run_name='__main__')",
        "    while m.active_run() is not None:",
        "        m.end_run()",
        "    outs[os.path.basename(path)] = buf.getvalue()",
        "print(json.dumps(outs))",
    ])
    out = run_python(code, cwd=cwd, env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def casstore_side(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    cwd = tmp_path_factory.mktemp("casstore-side")
    return cwd, _run_all(EXAMPLES, cwd, {"CASSTORE_TRACKING_URI": "", "MLFLOW_TRACKING_URI": ""}, "casstore")


def test_examples_run_under_casstore(casstore_side: tuple[Path, dict[str, str]]) -> None:
    cwd, outputs = casstore_side
    assert sorted(outputs) == sorted(p.name for p in EXAMPLES) and all(o.strip() for o in outputs.values())
    store = casstore.Client(str(cwd / "casstore")).store  # the default store, ./casstore
    runs = store.search_runs(None, deleted=None)
    assert len(runs) >= len(EXAMPLES) and all(r.sealed and r.status == "FINISHED" for r in runs)
    assert "loaded by alias predicts the same: True" in outputs["model_registry.py"]
    assert "from the run: [12.5, 22.5]" in outputs["custom_pyfunc.py"]
    assert "logged to the run: True" in outputs["evaluate_classifier.py"]
    assert "from a request with params: {'predictions': [{'x': 40.0}]}" in outputs["models_from_code.py"]
    assert "downloaded: ['config.yaml', 'plots'] ['notes.txt']" in outputs["artifacts_roundtrip.py"]
    assert "4 runs in 2 pages: ['extra-3', 'extra-2', 'extra-1', 'extra-0']" in outputs["client_tracking.py"]
    assert "deeper forests: ['forest-max_depth5']" in outputs["search_runs_analysis.py"]
    assert "checkpoints logged at steps: [0, 1, 2]" in outputs["logged_models.py"]
    assert "the holdout run used the best checkpoint: True" in outputs["logged_models.py"]
    assert "the best checkpoint's metrics: ['holdout_mse', 'val_mse']" in outputs["logged_models.py"]
    assert "with threshold 0.8: [0, 0, 1]" in outputs["signatures_and_datasets.py"]
    assert "scores s3 S3ArtifactDatasetSource True" in outputs["signatures_and_datasets.py"]
    assert "the holdout file loads back: True" in outputs["signatures_and_datasets.py"]


def test_the_only_lines_changed_are_imports() -> None:
    for script in EXAMPLES:
        source = script.read_text()
        changed = [(a, b) for a, b in zip(source.splitlines(), as_mlflow(source).splitlines()) if a != b]
        assert changed and all(a.startswith(("import ", "from ")) for a, _ in changed), script.name
        assert "casstore" not in as_mlflow(source).split('"""', 2)[-1], script.name  # no casstore call left


@pytest.mark.slow
def test_examples_print_the_same_under_mlflow(casstore_side: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    converted = []
    for script in EXAMPLES:
        target = tmp_path / script.name
        target.write_text(as_mlflow(script.read_text()))
        converted.append(target)
    real = _run_all(converted, tmp_path, {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
                                          "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true"}, "mlflow")
    mine = casstore_side[1]
    assert sorted(real) == sorted(mine)
    for name in mine:
        assert normalized(mine[name]) == normalized(real[name]), name
