"""The S3 backend against a real S3 HTTP server on loopback (or the endpoint in
``CASSTORE_TEST_S3_URL``): the conformance suite, the open-time probe of conditional
writes, configuration from the standard AWS settings, and clear errors."""

from __future__ import annotations

import functools
import multiprocessing
import os
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from s3_server import FaultProxy, S3Target

from casstore.backend import Backend, open_backend
from casstore.backend.s3 import PROBE_DIR, S3Backend
from casstore.exceptions import InvalidInputError, StoreConfigError, StoreUnavailableError
from casstore.objects import open_store
from casstore.testing.conformance import BackendConformance


class TestS3Backend(BackendConformance):
    @pytest.fixture
    def backend(self, s3_url: str) -> Iterator[Backend]:
        b = open_backend(s3_url)
        yield b
        b.close()

    @pytest.fixture
    def backend_factory(self, s3_url: str) -> Callable[[], Backend]:
        # the children inherit the environment: endpoint and credentials as a user sets them
        return functools.partial(open_backend, s3_url)


def _loopback_only(target: S3Target) -> None:
    if not target.loopback:
        pytest.skip("needs the loopback S3 server (plays a misbehaving service through a proxy)")


def _raw_keys(backend: S3Backend) -> list[str]:
    """Every object under the store's prefix, probe objects included (straight from S3's
    listing: s3fs's ``find`` would also report the empty directories SeaweedFS keeps)."""
    import boto3

    client = boto3.client("s3")  # endpoint and credentials from the environment, as the store's
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=backend.bucket, Prefix=f"{backend.prefix}/")
        return sorted(o["Key"] for page in pages for o in page.get("Contents") or ())
    finally:
        client.close()


# ---- the open-time probe -------------------------------------------------------------------


def test_opening_sends_no_write_and_the_first_write_probes_and_leaves_nothing(
    s3_env: S3Target, s3_proxy: FaultProxy
) -> None:
    _loopback_only(s3_env)
    backend = open_backend(s3_env.fresh_url(), {"endpoint_url": s3_proxy.endpoint_url})
    assert isinstance(backend, S3Backend)
    assert list(backend.list()) == []
    assert s3_proxy.count("PUT") == s3_proxy.count("DELETE") == 0  # opening and reading write nothing
    assert backend.put_if_absent("runs/r/meta", b"x") is True
    assert s3_proxy.count("PUT") == 3  # the probe's two conditional writes, then the write
    assert backend.supports_atomic_create is True
    assert [k.rsplit("/", 1)[-1] for k in _raw_keys(backend)] == ["meta"]


def test_a_service_that_ignores_if_none_match_is_refused(s3_env: S3Target, s3_proxy: FaultProxy) -> None:
    _loopback_only(s3_env)
    s3_proxy.conditions = "ignore"
    backend = open_backend(s3_env.fresh_url(), {"endpoint_url": s3_proxy.endpoint_url})
    assert list(backend.list()) == []  # reading needs no conditional write
    with pytest.raises(StoreConfigError, match="ignores conditional writes.*allow_unsafe_create"):
        backend.put_if_absent("runs/r/meta", b"x")


def test_a_service_that_rejects_if_none_match_is_refused(s3_env: S3Target, s3_proxy: FaultProxy) -> None:
    _loopback_only(s3_env)
    s3_proxy.conditions = "reject"
    with pytest.raises(StoreConfigError, match="does not support conditional writes"):
        open_backend(s3_env.fresh_url(), {"endpoint_url": s3_proxy.endpoint_url}).put_blob("chunks/aa/x", b"x")


@pytest.mark.parametrize("how", ["storage_options", "url", "env"])
def test_the_weaker_mode_is_an_explicit_choice(
    s3_env: S3Target, s3_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    _loopback_only(s3_env)
    s3_proxy.conditions = "ignore"
    url, opts = s3_env.fresh_url(), {"endpoint_url": s3_proxy.endpoint_url}
    if how == "storage_options":
        opts["allow_unsafe_create"] = True
    elif how == "url":
        url += "?allow_unsafe_create=true"
    else:
        monkeypatch.setenv("CASSTORE_S3_ALLOW_UNSAFE_CREATE", "1")
    backend = open_backend(url, opts)
    assert backend.supports_atomic_create is False
    # still create-if-absent for a single writer (check, then write)
    assert backend.put_if_absent("runs/r/meta", b"one") is True
    assert backend.put_if_absent("runs/r/meta", b"two") is False
    assert backend.get("runs/r/meta") == b"one"
    assert backend.put_blob("chunks/aa/bb/x", b"x") is True
    assert backend.put_blob("chunks/aa/bb/x", b"x") is False
    # and an object of another length (a partial one) is replaced, as in the atomic mode
    assert backend.put_if_absent("chunks/aa/bb/y", b"par") is True
    assert backend.put_blob("chunks/aa/bb/y", b"partial, now whole") is True
    assert backend.get("chunks/aa/bb/y") == b"partial, now whole"


def test_read_only_credentials_open_and_read_and_a_write_says_access_denied(
    s3_env: S3Target, s3_proxy: FaultProxy
) -> None:
    _loopback_only(s3_env)
    url = s3_env.fresh_url()
    open_backend(url).put_if_absent("runs/r/meta", b"written earlier")
    s3_proxy.deny_puts = True  # plays credentials with read access only
    reader = open_backend(url, {"endpoint_url": s3_proxy.endpoint_url})
    assert reader.get("runs/r/meta") == b"written earlier"
    with pytest.raises(StoreUnavailableError, match="refused \\(AccessDenied\\).*s3:PutObject"):
        reader.put_if_absent("runs/r/other", b"x")
    s3_proxy.deny_puts = False  # write access granted: the deferred probe runs, then the write
    assert reader.put_if_absent("runs/r/other", b"x") is True
    assert reader.supports_atomic_create is True


def test_a_service_that_honours_the_condition_keeps_atomic_create_even_when_unsafe_is_allowed(s3_url: str) -> None:
    backend = open_backend(s3_url, {"allow_unsafe_create": True})
    assert backend.supports_atomic_create is True


# ---- configuration -------------------------------------------------------------------------


def test_endpoint_from_storage_options_instead_of_the_environment(
    s3_env: S3Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    _loopback_only(s3_env)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    url = s3_env.fresh_url()
    backend = open_backend(url, {"endpoint_url": s3_env.endpoint_url, "concurrency": 3, "max_attempts": 2})
    assert (backend.concurrency, backend.max_attempts) == (3, 2)  # type: ignore[attr-defined]
    assert backend.put_if_absent("a/b", b"x") is True
    assert open_backend(url, {"endpoint_url": s3_env.endpoint_url}).get("a/b") == b"x"


@pytest.mark.parametrize(
    ("url", "opts", "match"),
    [
        ("s3://", {}, "names no bucket"),
        ("s3:///prefix", {}, "names no bucket"),
        ("s3://bucket/a/../b", {}, "unsafe"),
        ("s3://bucket/p?colour=blue", {}, "unknown option 'colour'"),
        ("s3://bucket/p?allow_unsafe_create=perhaps", {}, "not a boolean"),
        ("s3://bucket/p", {"concurrency": 0}, "positive integer"),
        ("s3://bucket/p", {"max_attempts": "many"}, "positive integer"),
        ("s3://bucket/p", {"no_such_s3fs_option": 1}, "bad storage_options"),
    ],
)
def test_bad_urls_and_options_are_refused_clearly(url: str, opts: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        open_backend(url, opts)


def test_a_missing_bucket_says_so(s3_env: S3Target) -> None:
    _loopback_only(s3_env)
    with pytest.raises(StoreUnavailableError, match="bucket 'no-such-bucket-here' does not exist"):
        list(open_backend("s3://no-such-bucket-here/p").list())  # opening sends nothing: the first request says


def test_missing_credentials_say_how_to_provide_them(s3_env: S3Target, monkeypatch: pytest.MonkeyPatch) -> None:
    _loopback_only(s3_env)
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(StoreUnavailableError, match="no AWS credentials found.*AWS_ACCESS_KEY_ID"):
        list(open_backend(s3_env.fresh_url(), {"skip_instance_cache": True}).list())


def test_an_unreachable_endpoint_is_reported_after_retries() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    opts = {"endpoint_url": f"http://127.0.0.1:{port}", "key": "k", "secret": "s", "max_attempts": 2}
    with pytest.raises(StoreUnavailableError, match="after 2 attempts.*AWS_ENDPOINT_URL") as info:
        open_backend("s3://bucket/p", opts).exists("casstore.json")
    assert isinstance(info.value, OSError)


# ---- consistency across handles ------------------------------------------------------------


def test_a_second_handle_sees_writes_at_once(s3_url: str) -> None:
    one = open_backend(s3_url, {"skip_instance_cache": True})
    two = open_backend(s3_url, {"skip_instance_cache": True})
    assert list(two.list("runs/")) == [] and two.exists("runs/r/meta") is False
    one.put_if_absent("runs/r/meta", b"m")
    assert two.exists("runs/r/meta") is True
    assert list(two.list("runs/")) == ["runs/r/meta"]
    one.delete("runs/r/meta")
    assert two.exists("runs/r/meta") is False
    assert list(two.list("runs/")) == []


def test_a_store_opened_after_the_environment_changed_uses_the_new_endpoint_and_credentials(
    moto_s3: S3Target, seaweed_s3: S3Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The endpoint and credentials are read when a store is opened, not when the first
    store with the same options was (s3fs would hand back that store's client)."""
    from seaweed import READER

    def use(env: dict[str, str]) -> None:
        for k, v in env.items():
            monkeypatch.setenv(k, v)

    url = moto_s3.fresh_url()
    assert seaweed_s3.base_url == moto_s3.base_url  # one URL, two servers
    use(moto_s3.env)
    assert open_backend(url).put_if_absent("k", b"on moto") is True
    use(seaweed_s3.env)
    on_seaweed = open_backend(url)
    assert on_seaweed.exists("k") is False
    assert on_seaweed.put_if_absent("k", b"on seaweedfs") is True
    use(READER.env())  # read-only credentials on the same endpoint
    reader = open_backend(url)
    assert reader.get("k") == b"on seaweedfs"
    with pytest.raises(StoreUnavailableError, match=r"refused \(AccessDenied\)"):
        reader.put_if_absent("k2", b"x")
    use(moto_s3.env)
    assert open_backend(url).get("k") == b"on moto"


def _use_in_child(backend: Backend, queue: Any) -> None:
    try:
        queue.put((backend.get("a/parent"), backend.put_if_absent("a/child", b"from the child")))
    except BaseException as e:
        queue.put(repr(e))


def test_a_store_opened_before_a_fork_works_in_the_child(s3_url: str) -> None:
    backend = open_backend(s3_url)
    backend.put_if_absent("a/parent", b"from the parent")
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_use_in_child, args=(backend, queue))
    child.start()
    try:
        assert queue.get(timeout=60) == (b"from the parent", True)
    finally:
        child.join(timeout=30)
    assert backend.get("a/child") == b"from the child"


# ---- the objects layer on S3 ---------------------------------------------------------------


def test_files_round_trip_verified_and_only_missing_chunks_travel(
    s3_env: S3Target, s3_proxy: FaultProxy, tmp_path: os.PathLike[str]
) -> None:
    """A loose store's chunk objects (a packed store's requests: tests/test_packs.py)."""
    objects = open_store(s3_env.fresh_url(), {"endpoint_url": s3_proxy.endpoint_url}, max_in_flight=8, layout="loose")
    data = bytearray(os.urandom(6 << 20))
    src = os.path.join(tmp_path, "weights.bin")
    with open(src, "wb") as f:
        f.write(data)
    s3_proxy.reset_counts()
    digest, size = objects.put_file(src)
    n_chunks = len(objects.recipe(digest).chunks)
    assert n_chunks > 2
    assert s3_proxy.count("PUT", "chunks") == n_chunks
    # many chunk objects in parallel, never one big body
    assert s3_proxy.max_put_body <= objects.config.chunker.max_size
    assert s3_proxy.max_concurrent_puts > 1
    dest = os.path.join(tmp_path, "out.bin")
    objects.get_file(digest, dest)
    with open(dest, "rb") as f:
        assert f.read() == data

    # the same file again: no chunk is sent
    s3_proxy.reset_counts()
    assert objects.put_file(src) == (digest, size)
    assert s3_proxy.count("PUT", "chunks") == 0
    assert s3_proxy.count() <= 4, s3_proxy.requests  # existence checks and a freshen, whatever the size

    # a small change in the middle: only the chunks around it are sent
    data[3 << 20 : (3 << 20) + 100] = os.urandom(100)
    with open(src, "wb") as f:
        f.write(data)
    s3_proxy.reset_counts()
    digest2, _ = objects.put_file(src)
    assert 1 <= s3_proxy.count("PUT", "chunks") <= 2
    assert objects.get_bytes(digest2) == bytes(data)


def test_max_in_flight_comes_from_the_argument_or_the_environment(
    s3_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert open_store(s3_url, max_in_flight=3).max_in_flight == 3
    monkeypatch.setenv("CASSTORE_MAX_IN_FLIGHT", "5")
    assert open_store(s3_url).max_in_flight == 5
    monkeypatch.setenv("CASSTORE_MAX_IN_FLIGHT", "none")
    with pytest.raises(InvalidInputError, match="CASSTORE_MAX_IN_FLIGHT"):
        open_store(s3_url)
    with pytest.raises(InvalidInputError, match="max_in_flight"):
        open_store(s3_url, max_in_flight=0)


def test_probe_objects_never_show_in_listings(s3_url: str) -> None:
    backend = open_backend(s3_url)
    assert isinstance(backend, S3Backend)
    # a probe object left by a writer killed mid-probe
    backend.fs.pipe_file(f"{backend.bucket}/{backend.prefix}/{PROBE_DIR}/leftover", b"x")
    backend.put_blob("chunks/aa/bb/c", b"c")
    assert list(backend.list()) == ["chunks/aa/bb/c"]


_MEMORY_CHILD = r"""
import os, sys
from casstore.objects import open_store

def peak_mib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) // 1024 for line in f if line.startswith("VmHWM"))

objects = open_store(sys.argv[1], max_in_flight=4, layout="loose")  # a packed store holds whole packs
objects.put_bytes(os.urandom(1 << 20))  # clients, pools and buffers exist from here on
base = peak_mib()
digest, _ = objects.put_file(sys.argv[2])
after_put = peak_mib()
objects.get_file(digest, sys.argv[2] + ".back")
print(base, after_put, peak_mib())
"""


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the peak resident set from /proc")
def test_upload_and_download_memory_is_bounded_by_chunks_in_flight_not_file_size(
    s3_url: str, tmp_path: os.PathLike[str]
) -> None:
    import subprocess
    import sys

    src = os.path.join(tmp_path, "big.bin")
    with open(src, "wb") as f:
        for _ in range(16):
            f.write(os.urandom(8 << 20))  # 128 MiB
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, s3_url, src], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    base, after_put, after_get = map(int, proc.stdout.split())
    # a few read buffers and 4 chunks (at most 4 MiB each), far below the 128 MiB file
    assert after_put - base < 80, f"uploading 128 MiB raised the peak resident set by {after_put - base} MiB"
    assert after_get - base < 80, f"downloading 128 MiB raised the peak resident set by {after_get - base} MiB"
    with open(src, "rb") as a, open(src + ".back", "rb") as b:
        assert a.read() == b.read()


# ---- timestamps ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "2026-12-06T12:04:09.000Z", "2026-12-06T12:04:09Z", "2026-12-06T12:04:09.123456+00:00",
    "2026-12-06T12:04:09.5-05:00", "2026-12-06T23:59:59.999+02:30", "Sun, 06 Dec 2026 12:04:09 GMT",
    "1765000000", "2026-12-06T12:04:09",
])
def test_timestamps_parse_to_the_instant_botocore_gives(text: str) -> None:
    from botocore.utils import parse_timestamp as botocore_parse

    from casstore.backend.s3 import parse_timestamp

    ours, theirs = parse_timestamp(text), botocore_parse(text)
    assert ours == theirs
    assert (ours.tzinfo is None) == (theirs.tzinfo is None)


def test_listings_and_info_give_modification_times_as_instants(s3_url: str) -> None:
    import time

    b = open_backend(s3_url)
    try:
        before = time.time()
        b.put_if_absent("t/stamped", b"x")
        mtime = b.info("t/stamped").mtime
        assert before - 5 <= mtime <= time.time() + 5
        parser = b.fs.session.get_component("response_parser_factory").create_parser("rest-xml")
        from casstore.backend.s3 import parse_timestamp

        assert parser._timestamp_parser is parse_timestamp  # what parses every listing's LastModified
    finally:
        b.close()
