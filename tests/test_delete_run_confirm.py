"""`casstore delete-run` cannot be undone, so it shows the run and asks first.

A run id prefix of 6 characters is easy to mistype into another run's; git and restic
users expect a destructive command to confirm or refuse. On a terminal the run is shown
(id, name, experiment, status, start, artifacts) and the answer decides; `--yes` skips
the question; without a terminal a prefix is refused (saying to give the full id or
`--yes`) and a full id, what a script holds, is taken as meant.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from casstore.cli import cli
from casstore.objects import open_store
from casstore.runs import RunStore


@pytest.fixture
def two_runs(tmp_path: Path) -> tuple[Path, str, str]:
    root = tmp_path / "store"
    store = RunStore(open_store(str(root), create=True))
    exp = store.get_or_create_experiment("confirm")
    ids = []
    for name in ("keep-me", "other"):
        h = store.create_run(exp, run_name=name)
        h.log_bytes("weights.bin", os.urandom(1000))
        h.end()
        ids.append(h.run_id)
    return root, ids[0], ids[1]


def _deleted(root: Path, run_id: str) -> bool:
    return RunStore(open_store(str(root))).is_deleted(run_id)


def _on_terminal(root: Path, args: list[str], answer: bytes) -> tuple[int, str]:
    """Run the command with a pseudo-terminal as its stdin, stdout and stderr; answer its
    question with ``answer``; its exit status and everything it printed."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "casstore.cli", "--store", str(root), *args],
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True, env={**os.environ, "CI": ""})
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 60
    answered = False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            out += data
            if not answered and b"[y/N]" in out:
                os.write(master, answer)
                answered = True
        elif proc.poll() is not None:
            break
    rc = proc.wait(timeout=30)
    os.close(master)
    return rc, out.decode(errors="replace")


def test_a_prefix_without_a_terminal_is_refused_and_nothing_is_deleted(two_runs: tuple[Path, str, str]) -> None:
    root, keep, _ = two_runs
    r = CliRunner().invoke(cli, ["delete-run", keep[:6], "--store", str(root)])
    assert r.exit_code == 1
    assert keep in r.output and "full id" in r.output and "--yes" in r.output and "nothing was deleted" in r.output
    assert not _deleted(root, keep)


def test_a_prefix_with_yes_and_a_full_id_delete_without_a_question(two_runs: tuple[Path, str, str]) -> None:
    root, keep, other = two_runs
    r = CliRunner().invoke(cli, ["delete-run", keep[:6], "--yes", "--store", str(root)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["delete-run", other, "--store", str(root)])
    assert r.exit_code == 0, r.output
    assert _deleted(root, keep) and _deleted(root, other)


def test_on_a_terminal_the_run_is_shown_and_no_keeps_it(two_runs: tuple[Path, str, str]) -> None:
    root, keep, other = two_runs
    rc, out = _on_terminal(root, ["delete-run", keep[:6]], b"n\n")
    assert rc == 1, out
    assert keep in out and "'keep-me'" in out and "1 artifact" in out and "cannot be undone" in out
    assert "nothing was changed" in out and "Traceback" not in out
    assert not _deleted(root, keep)
    rc, out = _on_terminal(root, ["delete-run", other], b"y\n")  # a full id is asked about too
    assert rc == 0, out
    assert f"run {other} deleted" in out
    assert _deleted(root, other) and not _deleted(root, keep)
