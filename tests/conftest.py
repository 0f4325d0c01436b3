"""Shared fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from layouts import LAYOUTS
from s3_server import FaultProxy, S3Target
from seaweed import ReadOnlyBucket, SeaweedS3

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
def _tracking_environment_restored() -> Iterator[None]:
    """MLflow's own ``set_tracking_uri`` and ``set_experiment`` write ``MLFLOW_*`` variables
    into ``os.environ``, and casstore honours them: no test may leak them into the next."""
    prefixes = ("MLFLOW_", "CASSTORE_")
    saved = {k: v for k, v in os.environ.items() if k.startswith(prefixes)}
    yield
    for k in [k for k in os.environ if k.startswith(prefixes) and k not in saved]:
        del os.environ[k]
    os.environ.update(saved)


# ---- content layouts ---------------------------------------------------------------------
#
# A suite that says ``pytestmark = pytest.mark.usefixtures("store_layout")`` runs each of its
# tests once per content layout (tests/layouts.py): the stores its tests create without
# naming a layout get that one (through ``CASSTORE_LAYOUT``, which child processes inherit).
# ``@pytest.mark.layout("loose")`` keeps a test of one layout's own mechanics to that layout.


@pytest.fixture
def store_layout(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The content layout of the stores this test creates (see above)."""
    from casstore.objects import LAYOUT_ENV

    layout: str = request.param
    monkeypatch.setenv(LAYOUT_ENV, layout)
    return layout


# ---- S3: real S3 HTTP servers on loopback, or the endpoint the user names ---------------
#
# Every test that takes ``s3_url``, ``s3_env`` or ``s3_target`` runs twice: against moto's
# S3 server (tests/s3_server.py) and against SeaweedFS (tests/seaweed.py), a separate S3
# implementation with storage of its own. Tests that put the fault-injecting, counting
# proxy in front of the server (``s3_proxy``) run against moto only. With
# ``CASSTORE_TEST_S3_URL`` set, they all run once, against that store.

S3_SERVERS = ("moto", "seaweedfs")
_S3_FIXTURES = {"moto": "moto_s3", "seaweedfs": "seaweed_s3", "external": "external_s3"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "layout(*names): run a test of a layout-aware suite on these content layouts only"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "store_layout" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("layout")
        metafunc.parametrize("store_layout", marker.args if marker else LAYOUTS, indirect=True)
    if "s3_target" not in metafunc.fixturenames:
        return
    from s3_server import TARGET_ENV

    if os.environ.get(TARGET_ENV, "").strip():
        servers: tuple[str, ...] = ("external",)
    elif "s3_proxy" in metafunc.fixturenames:
        servers = ("moto",)  # fault injection and request counting
    else:
        servers = S3_SERVERS
    metafunc.parametrize("s3_target", servers, indirect=True)


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[S3Target]:
    """moto's S3 server in a child process on 127.0.0.1, with a bucket and dummy credentials."""
    from s3_server import DUMMY_CREDENTIALS, LoopbackS3, make_bucket

    with LoopbackS3() as server:
        make_bucket(server.endpoint_url, "casstore-test")
        env = dict(DUMMY_CREDENTIALS, AWS_ENDPOINT_URL=server.endpoint_url)
        yield S3Target("s3://casstore-test", server.endpoint_url, env, loopback=True, server="moto")


@pytest.fixture(scope="session")
def seaweed_server() -> Iterator[SeaweedS3]:
    """SeaweedFS (``weed server -s3``) on 127.0.0.1 for the whole session, killed at its end.
    Fails with an install hint if the ``weed`` binary is missing."""
    from seaweed import WeedMissingError

    try:
        server = SeaweedS3()
    except WeedMissingError as e:
        missing = str(e)
    else:
        with server:
            yield server
        return
    pytest.fail(missing, pytrace=False)


@pytest.fixture(scope="session")
def seaweed_s3(seaweed_server: SeaweedS3) -> S3Target:
    """A bucket on the session's SeaweedFS, with administrator credentials."""
    bucket = seaweed_server.make_bucket("casstore-test")
    return S3Target(f"s3://{bucket}", seaweed_server.endpoint_url, seaweed_server.env(), loopback=True, server="seaweedfs")


@pytest.fixture
def s3_read_only(seaweed_server: SeaweedS3) -> ReadOnlyBucket:
    """A fresh bucket on SeaweedFS with an empty store URL in it (``.url``), and two identities:
    ``.writer`` may do anything, ``.reader`` may only read and list; a PUT, copy or DELETE
    signed by the reader is refused (403 AccessDenied). Fill the store with
    ``.env(.writer)`` or ``.storage_options(.writer)``, then run what must only read with
    the reader's. (Opening a store sends no write: the probe of conditional writes waits for
    the first write: see docs/remote-stores.md.)"""
    return seaweed_server.read_only_bucket()


@pytest.fixture(scope="session")
def external_s3() -> S3Target:
    """The store named by ``CASSTORE_TEST_S3_URL`` (credentials, region and endpoint from the
    standard AWS variables, e.g. ``AWS_ENDPOINT_URL`` for MinIO)."""
    from s3_server import TARGET_ENV

    external = os.environ.get(TARGET_ENV, "").strip()
    if not external.startswith("s3://"):
        pytest.fail(f"{TARGET_ENV} must be an s3://bucket/prefix URL, got {external!r}")
    return S3Target(external, os.environ.get("AWS_ENDPOINT_URL") or None)


@pytest.fixture
def s3_target(request: pytest.FixtureRequest) -> S3Target:
    """The S3 server a test runs against (see ``pytest_generate_tests``): moto or SeaweedFS on
    loopback, or the store in ``CASSTORE_TEST_S3_URL``. Looked up without a parameter
    (``request.getfixturevalue``), it is moto, or the external store when one is named."""
    from s3_server import TARGET_ENV

    default = "external" if os.environ.get(TARGET_ENV, "").strip() else "moto"
    server = getattr(request, "param", default)
    target: S3Target = request.getfixturevalue(_S3_FIXTURES[server])
    return target


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
