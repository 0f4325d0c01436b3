"""What a new user meets on the command line besides the documented steps: Ctrl-C in the
middle of a command, a port that is taken, a bucket that does not exist, a store another
user made, shell completion. Each answer is one line that says what happened and what to do."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from casstore.cli import cli

REPO = Path(__file__).resolve().parents[1]
CMD = [sys.executable, "-c", "from casstore.cli import main; main()"]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "CI": ""}


def casstore(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CMD, *args], capture_output=True, text=True, env=ENV, cwd=cwd, timeout=timeout)


def interrupt_a_log(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``casstore log`` of a named pipe, interrupted (SIGINT, as Ctrl-C sends it) while it
    waits for the pipe's next bytes: the interrupt surely lands in the middle of the log."""
    fifo = tmp_path / "stream.bin"
    os.mkfifo(fifo)
    proc = subprocess.Popen([*CMD, "log", str(fifo), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV, cwd=tmp_path)
    # opening the pipe waits for the log to open it, and the write returns once it has read
    # all but a pipe's buffer: the log is under way, and waits for more
    with open(fifo, "wb") as w:
        w.write(os.urandom(3 << 20))
        w.flush()
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_ctrl_c_in_a_log_ends_the_new_run_as_failed_and_exits_130(tmp_path: Path) -> None:
    p = interrupt_a_log(tmp_path, "--name", "stream")
    assert p.returncode == 130, (p.stdout, p.stderr)
    assert "Traceback" not in p.stderr and "Aborted" not in p.stderr
    [line] = p.stderr.splitlines()
    assert line.startswith("casstore: interrupted: run ") and "ended as FAILED" in line
    runs = json.loads(casstore("runs", "--json", cwd=tmp_path).stdout)
    assert [(r["run_name"], r["status"], r["artifacts"]) for r in runs] == [("stream", "FAILED", 0)]
    assert runs[0]["run_id"] in line


def test_ctrl_c_in_a_log_into_an_open_run_leaves_it_open(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    opened = casstore("log", "a.txt", "--keep-open", "--json", cwd=tmp_path)
    run_id = json.loads(opened.stdout)["run_id"]
    p = interrupt_a_log(tmp_path, "--run", run_id)
    assert p.returncode == 130, (p.stdout, p.stderr)
    assert p.stderr.strip() == (f"casstore: interrupted: run {run_id} stays open; log the files into it again "
                                "(chunks already stored are not written again)")
    [run] = json.loads(casstore("runs", "--json", cwd=tmp_path).stdout)
    assert run["status"] == "RUNNING" and run["artifacts"] == 1


def test_ui_on_a_port_in_use_says_so_in_one_line(tmp_path: Path) -> None:
    import socket

    (tmp_path / "a.txt").write_text("a")
    assert casstore("log", "a.txt", cwd=tmp_path).returncode == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        p = casstore("ui", "--port", str(port), cwd=tmp_path, timeout=60)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert p.stderr == f"casstore: error: cannot listen on 127.0.0.1:{port}: Address already in use; choose another --port or --host\n"
    assert "serving" not in p.stdout + p.stderr


def test_a_store_in_a_bucket_that_does_not_exist_is_named_as_such(moto_s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """`casstore runs` on a mistyped bucket says the bucket is missing, not that the store is."""
    for k, v in moto_s3.env.items():
        monkeypatch.setenv(k, v)
    r = CliRunner().invoke(cli, ["runs", "--store", "s3://no-such-bucket-typo/team-a"])
    assert r.exit_code == 1, r.output
    assert r.stderr.startswith("casstore: error: S3 store s3://no-such-bucket-typo/team-a")
    assert "bucket 'no-such-bucket-typo' does not exist" in r.stderr and r.stderr.count("\n") == 1
    # an existing bucket without a store: no store there, and how to get one
    r = CliRunner().invoke(cli, ["runs", "--store", moto_s3.fresh_url()])
    assert r.exit_code == 1 and "no casstore store at" in r.stderr and "first run logged to it" in r.stderr


# ---- a store another user made ----------------------------------------------------------------


@pytest.mark.parametrize(("umask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o002, 0o664, 0o775)])
def test_objects_take_the_umask_so_a_group_can_share_a_store(umask: int, file_mode: int, dir_mode: int,
                                                            tmp_path: Path) -> None:
    """Under umask 002 (docs/operations.md, 'A store shared by several users') every object
    and directory a log creates is group-writable, so the group's other users can freshen
    what they reuse (which gc's grace period relies on); under 022 others only read."""
    (tmp_path / "w.bin").write_bytes(os.urandom(3 << 20))
    old = os.umask(umask)
    try:
        r = CliRunner().invoke(cli, ["log", str(tmp_path / "w.bin"), "--store", str(tmp_path / "store")])
    finally:
        os.umask(old)
    assert r.exit_code == 0, r.output
    made = [p for p in (tmp_path / "store").rglob("*") if "wal" not in p.parts]
    files = {oct(p.stat().st_mode & 0o777) for p in made if p.is_file()}
    dirs = {oct(p.stat().st_mode & 0o777) for p in made if p.is_dir()}
    assert files == {oct(file_mode)} and dirs == {oct(dir_mode)}


def test_a_refused_write_says_whose_the_directory_is_and_how_to_share(tmp_path: Path) -> None:
    import errno
    import pwd

    from casstore.backend.local import LocalBackend

    backend = LocalBackend(str(tmp_path))
    refused = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "runs" / "abc"))
    message = str(backend._wrap("runs/abc/meta", refused))
    me = pwd.getpwuid(os.geteuid()).pw_name
    assert message.startswith(f"local store {str(tmp_path)!r}: cannot access 'runs/abc/meta': [Errno 13] Permission denied")
    assert f"You ({me}) lack the permission for {str(tmp_path)!r} (it belongs to {me})" in message
    assert "'A store shared by several users'" in message
    assert "A store shared by several users" in (REPO / "docs" / "operations.md").read_text()
