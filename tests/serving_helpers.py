"""The scoring server as a real process on a free loopback port, a small HTTP client,
and models whose behaviour the serving tests observe (importable by the server
process: the tests put this directory on its PYTHONPATH)."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import casstore.pyfunc

REPO = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
MARK_ENV = "CASSTORE_TEST_UNPICKLE_MARK"


class SleepyModel:
    """Predicts 2 * x; sleeps as many seconds as its first input value says first."""

    def predict(self, X: Any) -> np.ndarray:
        arr = np.asarray(X, dtype="float64")
        time.sleep(float(arr.ravel()[0]))
        return arr[:, 0] * 2


class MarkingModel:
    """A model that leaves a file behind whenever it is unpickled."""

    def __init__(self, payload: np.ndarray) -> None:
        self.payload = payload

    def predict(self, X: Any) -> np.ndarray:
        return np.full(len(X), float(self.payload[0]))

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        Path(os.environ[MARK_ENV]).write_text("unpickled")


class ScalingModel(casstore.pyfunc.PythonModel):
    """A custom model with an inference param: predicts ``x * k``."""

    def predict(self, context: Any, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        return (model_input["x"] * (params or {}).get("k", 1.0)).tolist()


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(port: int, method: str, path: str, body: bytes | str | dict[str, Any] | list[Any] | None = None,
            content_type: str | None = "application/json", headers: dict[str, str] | None = None,
            timeout: float = 30) -> Reply:
    """One HTTP request on a new connection to 127.0.0.1:port."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode("utf-8")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        h = dict(headers or {})
        if content_type is not None and body is not None:
            h["Content-Type"] = content_type
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


def post(port: int, body: Any, content_type: str | None = "application/json", path: str = "/invocations") -> Reply:
    return request(port, "POST", path, body, content_type)


class Server:
    """``casstore models serve`` in a child process on a free port (``--port 0``; the
    port is read from its log), stopped with SIGTERM (then SIGKILL) on exit."""

    def __init__(self, model_uri: str, store: str | None, *args: str, log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        cmd = [sys.executable, "-m", "casstore.cli", "models", "serve", "-m", model_uri, "--port", "0", *args]
        if store is not None:
            cmd += ["--store", store]
        full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS), os.environ.get("PYTHONPATH", "")]),
                    **(env or {})}
        self.out = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self.out, stderr=subprocess.STDOUT, env=full_env)
        self.port = 0

    def wait_ready(self, timeout: float = 60) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(rb"serving on http://[^:]+:(\d+)", self.log.read_bytes())
            if m:
                self.port = int(m.group(1))
                if request(self.port, "GET", "/ping").status == 200:
                    return self
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited with {self.proc.returncode}:\n{self.output()}")
            time.sleep(0.05)
        raise AssertionError(f"the server did not become ready:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()
        return self.proc.returncode

    def __enter__(self) -> Server:
        try:
            return self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
