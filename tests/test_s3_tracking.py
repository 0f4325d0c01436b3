"""``s3://bucket/prefix`` wherever a store URI is taken: ``set_tracking_uri``, the
environment (``CASSTORE_TRACKING_URI``, in a fresh process), and the command line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from blake3 import blake3
from click.testing import CliRunner
from tracking_helpers import run_python, write

import casstore
from casstore.cli import cli
from casstore.tracking import fluent, uri

#: every test here stores content: it runs on each content layout (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("store_layout")


@pytest.fixture
def s3_tracking(s3_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    monkeypatch.chdir(tmp_path)
    for var in ("CASSTORE_TRACKING_URI", fluent.EXPERIMENT_NAME_ENV, fluent.EXPERIMENT_ID_ENV):
        monkeypatch.delenv(var, raising=False)
    fluent._reset()
    yield s3_url
    while casstore.active_run() is not None:
        casstore.end_run()
    fluent._reset()
    uri._reset_tracking_uri()


def test_set_tracking_uri_env_and_cli_all_take_an_s3_url(s3_tracking: str, tmp_path: Path) -> None:
    weights = write(tmp_path / "weights.bin", bytes(range(256)) * 4000)
    casstore.set_tracking_uri(s3_tracking)
    with casstore.start_run(run_name="on-s3") as run:
        casstore.log_param("lr", "0.1")
        casstore.log_metric("loss", 0.5, step=1)
        casstore.log_artifact(str(weights))
    run_id = run.info.run_id
    view = casstore.get_run(run_id)
    assert view.data.params == {"lr": "0.1"}
    uri._reset_tracking_uri()

    # a fresh process that knows the store only from the environment
    code = (
        "import sys, casstore\n"
        "run = casstore.get_run(sys.argv[1])\n"
        "print(run.info.run_name, run.data.params['lr'])\n"
        "print(open(casstore.artifacts.download_artifacts(run_id=sys.argv[1], artifact_path='weights.bin'), 'rb').read()"
        " == open(sys.argv[2], 'rb').read())\n"
    )
    proc = run_python(code, run_id, str(weights), env={"CASSTORE_TRACKING_URI": s3_tracking})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["on-s3", "0.1", "True"]

    # the command line
    result = CliRunner().invoke(cli, ["ls", "-l", "--json", run_id, "--store", s3_tracking])
    assert result.exit_code == 0, result.output
    listed = {e["path"]: e for e in json.loads(result.output)}
    assert listed["weights.bin"]["digest"] == blake3(weights.read_bytes()).hexdigest()
