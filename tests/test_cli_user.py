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
from casstore.cli._common import human_size

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
    # Ctrl-C as at a terminal, even where this test was started with SIGINT ignored (a shell's background job)
    proc = subprocess.Popen([*CMD, "log", str(fifo), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV, cwd=tmp_path,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
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


# ---- gc's words ------------------------------------------------------------------------------


def packs_store_with_a_deleted_run(tmp_path: Path) -> str:
    """A store of the packs layout whose only run, of a 1 MiB file, is deleted."""
    store = str(tmp_path / "store")
    (tmp_path / "w.bin").write_bytes(os.urandom(1 << 20))
    os.environ["CASSTORE_LAYOUT"] = "packs"
    try:
        logged = CliRunner().invoke(cli, ["log", str(tmp_path / "w.bin"), "--json", "--store", store])
    finally:
        del os.environ["CASSTORE_LAYOUT"]
    assert json.loads((tmp_path / "store" / "casstore.json").read_text())["layout"] == "packs"
    assert len(list((tmp_path / "store" / "packs").rglob("*/*"))) == 1
    run_id = json.loads(logged.stdout)["run_id"]
    assert CliRunner().invoke(cli, ["delete-run", run_id, "--store", store]).exit_code == 0
    return store


def test_gc_counts_packs_in_its_summary_as_in_its_json(tmp_path: Path) -> None:
    """In a store of packs, what gc marks and deletes is packs: the summary counts them, and
    its totals are the sums of their parts, as in the JSON report."""
    store = packs_store_with_a_deleted_run(tmp_path)

    def words(counts: dict[str, int], size: int) -> str:
        total = sum(counts.get(k, 0) for k in ("chunks", "files", "models", "packs"))
        return (f"{total} objects ({human_size(size)}): {counts.get('chunks', 0)} chunks, {counts.get('files', 0)} "
                f"files, {counts.get('models', 0)} model entries, {counts.get('packs', 0)} packs")

    seen = []
    for _ in range(3):  # marks the run's file; deletes it and marks the pack it freed; deletes the pack
        time.sleep(1.1)  # gc's clock slack: a grace of 0 s is over a second after a mark
        dry = ["gc", "--dry-run", "--grace", "0s", "--store", store]
        report = json.loads(CliRunner().invoke(cli, [*dry, "--json"]).stdout)
        text = CliRunner().invoke(cli, dry).stdout.splitlines()
        deleted = {**report["deleted"], "packs": report["packs_deleted"]}
        assert text[0] == "would delete " + words(deleted, report["deleted_bytes"])
        assert text[1] == "would mark " + words(report["marked"], report["marked_bytes"]).replace(
            " objects", " unreferenced objects", 1)
        seen.append((deleted["packs"], report["marked"].get("packs", 0)))
        assert CliRunner().invoke(cli, ["gc", "--grace", "0s", "--store", store]).exit_code == 0
    assert seen == [(0, 0), (0, 1), (1, 0)]
    assert not list((tmp_path / "store" / "packs").rglob("*/*"))


def test_gc_no_writers_reclaims_a_dead_pack_in_one_run(tmp_path: Path) -> None:
    """``gc --no-writers`` deletes what is unreferenced now in this one run: the deleted
    run's file, and the pack that held its chunks (it marked the pack for a day's grace)."""
    store = packs_store_with_a_deleted_run(tmp_path)
    time.sleep(1.1)  # older than gc's clock slack, as anything is that a writer left a while ago
    r = CliRunner().invoke(cli, ["gc", "--no-writers", "--store", store])
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[0].startswith("deleted 2 objects (")
    assert r.stdout.splitlines()[0].endswith("): 0 chunks, 1 files, 0 model entries, 1 packs")
    assert not list((tmp_path / "store" / "packs").rglob("*/*"))
    assert not list((tmp_path / "store" / "chunk-index").rglob("*"))
    assert CliRunner().invoke(cli, ["verify", "--all", "--store", store]).exit_code == 0


# ---- shell completion -------------------------------------------------------------------------


def complete(words: str, cwd: Path, shell: str = "bash") -> list[str]:
    """What the shell's completion function gets for the command line ``words`` (the last
    word being completed), from the real command."""
    env = {**ENV, "_CASSTORE_COMPLETE": f"{shell}_complete", "COMP_WORDS": words,
           "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1))}
    p = subprocess.run(CMD, capture_output=True, text=True, env=env, cwd=cwd, timeout=120)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    return [line for line in p.stdout.splitlines() if line]


def test_run_ids_complete_in_the_shell_with_their_names(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    ids = {}
    for name in ("baseline", "tuned"):
        ids[name] = json.loads(casstore("log", "a.txt", "--name", name, "--json", cwd=tmp_path).stdout)["run_id"]
    both = {f"plain,{ids['baseline']}", f"plain,{ids['tuned']}"}
    assert set(complete("casstore show ", tmp_path)) == both
    shared = len(os.path.commonprefix([ids["baseline"], ids["tuned"]]))  # ids begin with their time
    assert complete(f"casstore show {ids['tuned'][:shared + 1]}", tmp_path) == [f"plain,{ids['tuned']}"]
    assert set(complete(f"casstore diff {ids['tuned']} ", tmp_path)) == both
    assert set(complete("casstore log a.txt --run ", tmp_path)) == both
    # the group's --store names the store, and zsh shows each run's name
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    zsh = complete(f"casstore --store {tmp_path / 'casstore'} verify {ids['baseline']}", elsewhere, "zsh")
    assert zsh == ["plain", ids["baseline"], "baseline"]
    # a store that cannot be read completes nothing, and says nothing
    assert complete("casstore --store /nonexistent/store show ", tmp_path) == []
    assert "complete -o nosort -F _casstore_completion casstore" in subprocess.run(
        ["bash", "-c", 'eval "$(_CASSTORE_COMPLETE=bash_source casstore)" && complete -p casstore'],
        capture_output=True, text=True, env={**ENV, "PATH": f"{Path(sys.executable).parent}:{ENV['PATH']}"},
        timeout=120).stdout


# ---- experiments --------------------------------------------------------------------------------


def test_experiments_are_listed_with_their_live_runs(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    (tmp_path / "a.txt").write_text("a")
    for exp in ("fraud", "fraud", "churn"):
        assert CliRunner().invoke(cli, ["log", str(tmp_path / "a.txt"), "-e", exp, "--store", store]).exit_code == 0
    listed = json.loads(CliRunner().invoke(cli, ["experiments", "--json", "--store", store]).stdout)
    assert [(e["name"], e["runs"], e["lifecycle_stage"]) for e in listed] == [
        ("Default", 0, "active"), ("fraud", 2, "active"), ("churn", 1, "active")]
    fraud = listed[1]["experiment_id"]
    [run] = json.loads(CliRunner().invoke(cli, ["runs", "-e", "churn", "--json", "--store", store]).stdout)
    assert CliRunner().invoke(cli, ["delete-run", run["run_id"], "--store", store]).exit_code == 0
    table = CliRunner().invoke(cli, ["experiments", "--store", store]).stdout.splitlines()
    assert table[0].split() == ["id", "name", "runs", "created", "state"]
    assert table[2].split()[:3] == [fraud, "fraud", "2"] and table[3].split()[1:3] == ["churn", "0"]
    missing = CliRunner().invoke(cli, ["runs", "-e", "frauds", "--store", store])
    assert missing.exit_code == 1 and "(see `casstore experiments`)" in missing.stderr


def test_audit_refuses_two_forms_at_once(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    run_id = json.loads(CliRunner().invoke(cli, ["log", str(tmp_path / "a.txt"), "--json",
                                                 "--store", str(tmp_path / "s")]).stdout)["run_id"]
    r = CliRunner().invoke(cli, ["audit", run_id, "--json", "--markdown", "--store", str(tmp_path / "s")])
    assert r.exit_code == 2 and "--json and --markdown are two forms of the report: give one of them" in r.stderr
    assert r.stdout == ""
    r = CliRunner().invoke(cli, ["audit", run_id, "--markdown", "--store", str(tmp_path / "s")])
    assert r.exit_code == 0 and r.stdout.startswith(f"# Audit of run {run_id}")


def test_experiment_and_model_names_complete_in_the_shell(tmp_path: Path) -> None:
    from test_cli import Store

    st = Store(tmp_path / "s")  # experiment "fraud", registered model "fraud-model"
    store = str(st.root)
    assert complete(f"casstore --store {store} runs -e fr", tmp_path, "zsh")[:2] == ["plain", "fraud"]
    assert "Default" in complete(f"casstore --store {store} runs --experiment ", tmp_path, "zsh")
    assert complete(f"casstore log a.txt --store {store} --experiment fr", tmp_path)[0] == "plain,fraud"
    assert complete(f"casstore --store {store} models versions ", tmp_path) == ["plain,fraud-model"]
    assert complete(f"casstore --store {store} models alias fraud-", tmp_path, "zsh") == ["plain", "fraud-model",
                                                                                        "latest 1"]
