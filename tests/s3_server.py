"""A real S3 HTTP server on loopback, and a fault-injecting proxy to put in front of it.

:class:`LoopbackS3` runs moto's S3 server (``ThreadedMotoServer``) in a child process
on ``127.0.0.1`` and a free port, so its state and its GIL are its own. moto checks a
write's ``If-None-Match``/``If-Match`` condition and then writes, without a lock, so two
racing requests could in principle both pass the check; S3 decides the condition and
the write as one step. :class:`AtomicConditionalWrites` makes moto do the same, so
the races the tests provoke are decided as S3 decides them.

:class:`FaultProxy` is a loopback HTTP proxy (a bounded number of threads) that
counts requests and, on demand, answers a share of them with 503/500 without
forwarding, drops the connection before forwarding, or forwards and then drops the
reply (the request took effect, the client cannot know), or stops forwarding
after a number of requests.

Run as a script, this module serves until its standard input closes and prints the
port on the first line: ``python tests/s3_server.py``.
"""

from __future__ import annotations

import collections
import http.client
import http.server
import logging
import os
import random
import select
import socketserver
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AtomicConditionalWrites", "LoopbackS3", "FaultProxy", "S3Target", "make_bucket", "TARGET_ENV"]

DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "casstore-test",
    "AWS_SECRET_ACCESS_KEY": "casstore-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


#: set to ``s3://bucket/prefix`` to run the S3 tests against that store instead of moto
#: (credentials, region and endpoint then come from the usual AWS variables)
TARGET_ENV = "CASSTORE_TEST_S3_URL"


@dataclass
class S3Target:
    """Where the S3 tests write: a base URL, the endpoint (None: AWS's own), the env to set."""

    base_url: str
    endpoint_url: str | None
    env: dict[str, str] = field(default_factory=dict)
    loopback: bool = False
    #: every URL handed out, so that what the tests wrote on an external endpoint is removed
    issued: list[str] = field(default_factory=list)
    #: which server: "moto", "seaweedfs", or "external" (the store in CASSTORE_TEST_S3_URL)
    server: str = "external"

    def fresh_url(self, tag: str = "t") -> str:
        """A new, empty store URL under the base."""
        url = f"{self.base_url.rstrip('/')}/{tag}-{uuid.uuid4().hex[:12]}"
        self.issued.append(url)
        return url


class AtomicConditionalWrites:
    """WSGI middleware: conditional writes to one key are served one at a time, so their
    check and write are one step (writes to different keys still run in parallel)."""

    STRIPES = 64

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.locks = [threading.Lock() for _ in range(self.STRIPES)]

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        conditional = "HTTP_IF_NONE_MATCH" in environ or "HTTP_IF_MATCH" in environ
        if conditional and environ.get("REQUEST_METHOD") in ("PUT", "POST"):
            key = environ.get("PATH_INFO", "")
            with self.locks[hash(key) % self.STRIPES]:
                return list(self.app(environ, start_response))
        return self.app(environ, start_response)


def _serve() -> None:
    """Child-process entry: moto's threaded server with atomic conditional writes."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from moto.server import ThreadedMotoServer
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    class Server(ThreadedMotoServer):
        def _server_entry(self) -> None:
            app = AtomicConditionalWrites(DomainDispatcherApplication(create_backend_app))
            self._server = make_server(self._ip_address, self._port, app, threaded=True)
            self._server_ready_event.set()
            self._server.serve_forever()

    server = Server(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    print(server.get_host_and_port()[1], flush=True)
    sys.stdin.read()  # until the parent closes the pipe or dies
    server.stop()


class LoopbackS3:
    """moto's S3 server in a child process on 127.0.0.1; ``endpoint_url`` says where."""

    def __init__(self) -> None:
        env = dict(os.environ, **DUMMY_CREDENTIALS)
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        line = self.proc.stdout.readline() if ready else ""
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError(f"the loopback S3 server did not start (got {line!r})")
        self.port = int(line)
        self.endpoint_url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        publish_pending_summaries()
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> LoopbackS3:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def publish_pending_summaries() -> None:
    """Publish the run summaries this process still holds (published in the background
    within a second of a run's end) while the server is up: a process that stopped it
    first would try them at exit against nothing and warn that they were not published."""
    if "casstore.runs.index" in sys.modules:
        sys.modules["casstore.runs.index"].flush_pending()


def make_bucket(endpoint_url: str, bucket: str) -> None:
    """Create ``bucket`` on a (loopback) S3 endpoint with the dummy credentials."""
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=DUMMY_CREDENTIALS["AWS_DEFAULT_REGION"],
    )
    try:
        client.create_bucket(Bucket=bucket)
    finally:
        client.close()


# ---- the fault-injecting proxy -----------------------------------------------------------

_HOP_HEADERS = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}
_ERROR_BODY = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
    "<Message>injected by the test proxy</Message></Error>"
)


class FaultProxy:
    """Loopback HTTP proxy to ``upstream`` that counts requests and injects faults.

    ``fail_rate`` answers that share of requests itself (503 SlowDown or 500
    InternalError, alternately); ``drop_rate`` closes the connection before
    forwarding; ``lose_reply_rate`` forwards and then closes without replying;
    ``stall_rate`` holds a request ``stall_seconds`` before forwarding it (longer than
    the client's read timeout: the client gives up, the request still lands).
    A request whose body arrives incomplete (its sender died) is never forwarded.
    ``forward_limit`` set to ``n`` lets ``n`` more PUTs through, then drops every
    request until it is set back to ``None``. ``conditions`` plays a service that
    ``"ignore"``s ``If-None-Match`` (strips it; the loopback server does not check
    signatures) or ``"reject"``s it (501 NotImplemented).
    """

    def __init__(self, upstream: str, *, seed: int = 0, max_connections: int = 64) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        if parsed.scheme != "http" or not parsed.hostname:
            raise ValueError(f"FaultProxy forwards plain HTTP only, not {upstream!r}")
        self.upstream = (parsed.hostname, parsed.port or 80)
        self.fail_rate = 0.0
        self.drop_rate = 0.0
        self.lose_reply_rate = 0.0
        self.stall_rate = 0.0
        self.stall_seconds = 2.0
        self.forward_limit: int | None = None
        self.conditions = "honour"
        #: answer every PUT with 403 AccessDenied (read-only credentials)
        self.deny_puts = False
        #: let this many more PUTs through, then answer every PUT with 507 XMinioStorageFull (a full service)
        self.full_after: int | None = None
        #: the most PUTs in flight at once, and the largest PUT body seen
        self.max_concurrent_puts = 0
        self.max_put_body = 0
        self._puts_in_flight = 0
        self.requests: collections.Counter[tuple[str, str]] = collections.Counter()
        self.faults: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._slots = threading.BoundedSemaphore(max_connections)
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def handle(self) -> None:
                with proxy._slots:
                    self.upstream_conn: http.client.HTTPConnection | None = None
                    try:
                        super().handle()
                    finally:
                        if self.upstream_conn is not None:
                            self.upstream_conn.close()

            def do_any(self) -> None:
                proxy._relay(self)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_any

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that hung up (as the faults make them do) is not news

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    # ---- counting ----------------------------------------------------------------

    def count(self, method: str | None = None, area: str | None = None) -> int:
        """Requests seen (forwarded or not), by HTTP method (``COPY`` for a server-side copy)
        and store area (``chunks``, ``files``, ...)."""
        with self._lock:
            return sum(
                n
                for (m, a), n in self.requests.items()
                if (method is None or m == method) and (area is None or a == area)
            )

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until no PUT is being relayed (a dead client's last requests have landed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._puts_in_flight == 0:
                    return
            time.sleep(0.05)
        raise TimeoutError("the proxy is still relaying PUTs")

    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()
            self.faults.clear()
            self.max_concurrent_puts = 0
            self.max_put_body = 0

    @staticmethod
    def _area(path: str) -> str:
        # /<bucket>/<prefix...>/<area>/... : the area is the part after the store prefix,
        # recognised by name
        parts = urllib.parse.urlsplit(path).path.strip("/").split("/")
        for p in parts[1:]:
            if p in ("chunks", "files", "runs", "models", "registry", "experiments", "casstore.json", ".casstore-probe",
                     "packs", "chunk-index"):
                return p
        return ""

    # ---- relaying ----------------------------------------------------------------

    def _decide(self, method: str) -> str:
        with self._lock:
            if self.forward_limit is not None:
                if self.forward_limit <= 0:
                    return "drop"
                if method == "PUT":
                    self.forward_limit -= 1
            r = self._rng.random()
            if r < self.fail_rate:
                return "fail"
            r -= self.fail_rate
            if r < self.drop_rate:
                return "drop"
            r -= self.drop_rate
            if r < self.lose_reply_rate:
                return "lose"
            r -= self.lose_reply_rate
            if r < self.stall_rate:
                return "stall"
            return "forward"

    def _relay(self, h: Any) -> None:
        method = h.command
        kind = "COPY" if "x-amz-copy-source" in h.headers else method  # a copy is a PUT with no body
        with self._lock:
            self.requests[(kind, self._area(h.path))] += 1
            if method == "PUT":
                self._puts_in_flight += 1
                self.max_concurrent_puts = max(self.max_concurrent_puts, self._puts_in_flight)
        try:
            body = _read_body(h)
            if body is None:  # the sender died mid-body: nothing to forward
                h.close_connection = True
                return
            if method == "PUT":
                with self._lock:
                    self.max_put_body = max(self.max_put_body, len(body))
            self._relay_body(h, method, body)
        finally:
            if method == "PUT":
                with self._lock:
                    self._puts_in_flight -= 1

    def _relay_body(self, h: Any, method: str, body: bytes) -> None:
        if self.deny_puts and method == "PUT":
            self._reply_error(h, 403, "AccessDenied")
            return
        if self.full_after is not None and method == "PUT" and "x-amz-copy-source" not in h.headers:
            with self._lock:
                full = self.full_after <= 0
                self.full_after -= 1
            if full:
                self._reply_error(h, 507, "XMinioStorageFull")
                return
        if "If-None-Match" in h.headers and method == "PUT":
            if self.conditions == "ignore":
                del h.headers["If-None-Match"]
            elif self.conditions == "reject":
                self._reply_error(h, 501, "NotImplemented")
                return
        action = self._decide(method)
        if action != "forward":
            with self._lock:
                self.faults[action] += 1
        if action == "drop":
            h.close_connection = True
            return
        if action == "fail":
            with self._lock:
                slow = self.faults["fail"] % 2 == 1
            code, status = ("SlowDown", 503) if slow else ("InternalError", 500)
            self._reply_error(h, status, code)
            return
        if action == "stall":
            time.sleep(self.stall_seconds)
        status, reason, headers, payload = self._forward(h, method, body)
        if action in ("lose", "stall"):
            h.close_connection = True
            return
        h.send_response(status, reason)
        for k, v in headers:
            if k.lower() not in _HOP_HEADERS and k.lower() != "content-length":
                h.send_header(k, v)
        length = dict((k.lower(), v) for k, v in headers).get("content-length")
        h.send_header("Content-Length", length if method == "HEAD" and length else str(len(payload)))
        h.end_headers()
        if method != "HEAD":
            h.wfile.write(payload)

    @staticmethod
    def _reply_error(h: Any, status: int, code: str) -> None:
        payload = _ERROR_BODY.format(code=code).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/xml")
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(payload)

    def _forward(self, h: Any, method: str, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        for attempt in (0, 1):
            conn = h.upstream_conn
            if conn is None:
                conn = h.upstream_conn = http.client.HTTPConnection(*self.upstream, timeout=60)
            try:
                conn.putrequest(method, h.path, skip_host=True, skip_accept_encoding=True)
                for k, v in h.headers.items():
                    if k.lower() not in _HOP_HEADERS:
                        conn.putheader(k, v)
                if "content-length" not in (k.lower() for k in h.headers.keys()) and body:
                    conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body if body else None)
                resp = conn.getresponse()
                payload = resp.read()
                return resp.status, resp.reason, resp.getheaders(), payload
            except (http.client.HTTPException, OSError):
                conn.close()
                h.upstream_conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_body(h: Any) -> bytes | None:
    """The request body, de-chunked if it came with ``Transfer-Encoding: chunked``;
    None if the connection ended before the whole body arrived."""
    length = h.headers.get("Content-Length")
    if length is not None:
        body = bytes(h.rfile.read(int(length)))
        return body if len(body) == int(length) else None
    if h.headers.get("Transfer-Encoding", "").lower() != "chunked":
        return b""
    out = bytearray()
    while True:
        line = h.rfile.readline()
        if not line:
            return None
        size = int(line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return bytes(out)
        out += h.rfile.read(size)
        h.rfile.readline()


if __name__ == "__main__":
    _serve()
