"""The backup recipe of docs/operations.md, run as printed, restores a store of either
content layout: every run reads back and verifies from the copy."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from casstore.cli import cli
from casstore.objects import open_store
from casstore.runs import RunStore

DOCS = Path(__file__).resolve().parents[1] / "docs"


def backup_block() -> str:
    """The Python block of the operations page that defines ``backup``."""
    text = (DOCS / "operations.md").read_text(encoding="utf-8")
    [code] = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "def backup(" in b]
    return code


@pytest.mark.parametrize("layout", ["loose", "packs"])
def test_the_documented_backup_restores_every_run(layout: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runs = RunStore(open_store("casstore", layout=layout))
    weights = os.urandom(3 << 20)
    exp = runs.get_or_create_experiment("ops")
    run = runs.create_run(exp, run_name="keep")
    run.log_param("lr", "0.1")
    run.log_bytes("model/weights.bin", weights)
    run.log_bytes("notes.txt", b"small")
    run.end()

    exec(compile(backup_block(), "operations.md", "exec"), {"os": os, "__name__": "docs"})

    verified = CliRunner().invoke(cli, ["--store", "backup", "verify", "--all", "--json"])
    assert verified.exit_code == 0, verified.output
    got = CliRunner().invoke(cli, ["--store", "backup", "cat", run.run_id, "model/weights.bin"])
    assert got.exit_code == 0, got.stderr
    assert got.stdout_bytes == weights
    listed = CliRunner().invoke(cli, ["--store", "backup", "runs", "--experiment", "ops", "--json"])
    assert listed.exit_code == 0, listed.stderr
    assert '"run_name": "keep"' in listed.stdout
