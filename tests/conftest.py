"""Shared fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from s3_server import FaultProxy, S3Target

@pytest.fixture(autouse=True, scope="session")
def _own_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The tests' stat cache (``casstore.objects.statcache``) is their own, not the user's;
    child processes the tests start inherit it."""
    old = os.environ.get("CASSTORE_CACHE_DIR")
    os.environ["CASSTORE_CACHE_DIR"] = str(tmp_path_factory.mktemp("casstore-cache"))
    yield
    if old is None:
        os.environ.pop("CASSTORE_CACHE_DIR", None)
    else:
        os.environ["CASSTORE_CACHE_DIR"] = old


@pytest.fixture(autouse=True)
def _mlflow_variables_kept_to_their_test() -> Iterator[None]:
    """MLflow run in this process (``set_tracking_uri``, ``set_experiment``) writes MLFLOW_*
    variables into the environment; put it back after each test, so none reaches a later
    test or the processes it starts."""
    before = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}
    yield
    for k in [k for k in os.environ if k.startswith("MLFLOW_") and k not in before]:
        del os.environ[k]
    os.environ.update(before)


# ---- S3: a real S3 HTTP server on loopback, or the endpoint the user names ---------------


@pytest.fixture(scope="session")
def s3_target() -> Iterator[S3Target]:
    """moto's S3 server in a child process on 127.0.0.1 with a bucket; or, when
    ``CASSTORE_TEST_S3_URL=s3://bucket/prefix`` is set, that store (credentials, region and
    endpoint from the standard AWS variables, e.g. ``AWS_ENDPOINT_URL`` for MinIO)."""
    from s3_server import DUMMY_CREDENTIALS, TARGET_ENV, LoopbackS3, make_bucket

    external = os.environ.get(TARGET_ENV, "").strip()
    if external:
        if not external.startswith("s3://"):
            pytest.fail(f"{TARGET_ENV} must be an s3://bucket/prefix URL, got {external!r}")
        yield S3Target(external, os.environ.get("AWS_ENDPOINT_URL") or None)
        return
    with LoopbackS3() as server:
        make_bucket(server.endpoint_url, "casstore-test")
        env = dict(DUMMY_CREDENTIALS, AWS_ENDPOINT_URL=server.endpoint_url)
        yield S3Target("s3://casstore-test", server.endpoint_url, env, loopback=True)


@pytest.fixture
def s3_env(s3_target: S3Target, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Target]:
    """The S3 target, with its credentials and endpoint in the environment (as a user sets
    them). On an external endpoint, the stores a test opened under it are removed afterwards."""
    for k, v in s3_target.env.items():
        monkeypatch.setenv(k, v)
    first = len(s3_target.issued)
    yield s3_target
    if not s3_target.loopback:
        from casstore.backend import open_backend

        for url in s3_target.issued[first:]:
            backend = open_backend(url, {"allow_unsafe_create": True})
            for key in list(backend.list()):
                backend.delete(key)


@pytest.fixture
def s3_url(s3_env: S3Target) -> str:
    """A fresh, empty S3 store URL."""
    return s3_env.fresh_url()


@pytest.fixture
def s3_proxy(s3_env: S3Target) -> Iterator[FaultProxy]:
    """A counting, fault-injecting proxy in front of the S3 endpoint (no faults until asked)."""
    if not (s3_env.endpoint_url or "").startswith("http://"):
        pytest.skip("the test proxy forwards plain HTTP only")
    with FaultProxy(s3_env.endpoint_url or "", seed=5) as proxy:
        yield proxy
