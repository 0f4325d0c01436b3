"""Bad input to the objects layer: a clear casstore error, and nothing half-stored or half-written."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from casstore.exceptions import (
    CasstoreError,
    InvalidDigestError,
    InvalidInputError,
    LocalFileError,
    ObjectNotFoundError,
    StoreUnavailableError,
)
from casstore.objects import ChunkerParams, ObjectStore, open_store
from casstore.testing import strategies as cst

SMALL = ChunkerParams(min_size=1024, avg_size=4096, max_size=16384)


@pytest.fixture
def objects(tmp_path: Path) -> ObjectStore:
    objects = open_store(tmp_path / "store", chunker=SMALL)
    objects.put_bytes(b"something already stored")
    return objects


def store_contents(objects: ObjectStore) -> list[str]:
    return sorted(objects.backend.list())


def test_a_missing_file_is_refused(objects: ObjectStore, tmp_path: Path) -> None:
    before = store_contents(objects)
    with pytest.raises(LocalFileError, match="no such file") as caught:
        objects.put_file(tmp_path / "no-such-file.bin")
    assert isinstance(caught.value, ValueError)
    assert "no-such-file.bin" in str(caught.value)
    assert store_contents(objects) == before


def test_a_directory_is_refused(objects: ObjectStore, tmp_path: Path) -> None:
    (tmp_path / "adir").mkdir()
    before = store_contents(objects)
    with pytest.raises(LocalFileError, match="directory"):
        objects.put_file(tmp_path / "adir")
    assert store_contents(objects) == before


_UNREADABLE_CHILD = """
import sys
from casstore.exceptions import LocalFileError
from casstore.objects import open_store
objects = open_store(sys.argv[1])
before = sorted(objects.backend.list())
try:
    objects.put_file(sys.argv[2])
except LocalFileError as e:
    print("refused:", e)
print("unchanged" if sorted(objects.backend.list()) == before else "changed")
"""


def test_an_unreadable_file_is_refused(objects: ObjectStore, tmp_path: Path) -> None:
    f = tmp_path / "secret.bin"
    f.write_bytes(b"x" * 100_000)
    f.chmod(0)
    try:
        if not os.access(f, os.R_OK):
            before = store_contents(objects)
            with pytest.raises(LocalFileError, match="permission denied"):
                objects.put_file(f)
            assert store_contents(objects) == before
            return
        # root reads any file: try it in a child without the capabilities that allow that
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running with privileges that read any file (root), and no setpriv to drop them")
        store = objects.backend.url.removeprefix("file://")
        out = subprocess.run(
            [setpriv, "--bounding-set", "-dac_override,-dac_read_search", sys.executable, "-c", _UNREADABLE_CHILD,
             store, str(f)],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        assert out.returncode == 0, out.stderr
        assert "refused:" in out.stdout and "permission denied" in out.stdout, out.stdout
        assert out.stdout.rstrip().endswith("unchanged")
    finally:
        f.chmod(0o600)


def test_a_fifo_is_stored_from_a_single_pass(objects: ObjectStore, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    data = random.Random(1).randbytes(200_000)

    def feed() -> None:
        with open(fifo, "wb") as w:
            w.write(data)

    writer = threading.Thread(target=feed)
    writer.start()
    digest, size = objects.put_file(fifo)
    writer.join()
    assert size == len(data)
    assert objects.get_bytes(digest) == data


def test_a_file_changed_while_it_is_stored_is_refused_and_not_recorded(objects: ObjectStore, tmp_path: Path) -> None:
    f = tmp_path / "growing.bin"
    original = random.Random(2).randbytes(12 << 20)  # larger than a read block: the streaming pass
    f.write_bytes(original)
    changed = False

    def writer_strikes(_n: int) -> None:  # runs after the first chunk of the storing pass
        nonlocal changed
        if not changed:
            changed = True
            with open(f, "r+b") as w:
                w.seek(10 << 20)
                w.write(b"\xff" * 1000)

    recipes = sorted(objects.backend.list("files/"))
    with pytest.raises(LocalFileError, match="changed while it was being stored"):
        objects.put_file(f, progress=writer_strikes)
    assert sorted(objects.backend.list("files/")) == recipes, "a recipe was recorded for a file that changed"


_BAD_DIGEST_CALLS: dict[str, Callable[[ObjectStore, Any, Path], object]] = {
    "get_bytes": lambda o, d, p: o.get_bytes(d),
    "get_file": lambda o, d, p: o.get_file(d, p / "dl" / "out.bin"),
    "open": lambda o, d, p: o.open(d),
    "iter_file": lambda o, d, p: o.iter_file(d),
    "verify_file": lambda o, d, p: o.verify_file(d),
    "has_file": lambda o, d, p: o.has_file(d),
    "recipe": lambda o, d, p: o.recipe(d),
    "chunk_digests": lambda o, d, p: o.chunk_digests(d),
    "missing_files": lambda o, d, p: o.missing_files([d]),
}


@pytest.mark.parametrize("call", sorted(_BAD_DIGEST_CALLS))
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bad=cst.malformed_digests())
def test_a_malformed_digest_is_refused_before_any_io(objects: ObjectStore, tmp_path: Path, call: str, bad: object) -> None:
    with pytest.raises(InvalidDigestError) as caught:
        _BAD_DIGEST_CALLS[call](objects, bad, tmp_path)
    assert "b3sum" in str(caught.value)
    assert not (tmp_path / "dl").exists(), "a refused download created its destination directory"


@pytest.mark.parametrize("call", ["get_bytes", "get_file", "open", "iter_file", "verify_file", "recipe"])
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(digest=cst.digests())
def test_an_unknown_digest_is_not_found_and_downloads_nothing(
    objects: ObjectStore, tmp_path: Path, call: str, digest: str
) -> None:
    with pytest.raises(ObjectNotFoundError, match=digest):
        _BAD_DIGEST_CALLS[call](objects, digest, tmp_path)
    assert not (tmp_path / "dl").exists()
    assert objects.has_file(digest) is False


def test_a_download_onto_a_directory_is_refused_and_leaves_it(objects: ObjectStore, tmp_path: Path) -> None:
    digest, _ = objects.put_bytes(b"payload" * 1000)
    target = tmp_path / "target"
    target.mkdir()
    (target / "inside.txt").write_text("keep")
    with pytest.raises(LocalFileError, match="cannot write"):
        objects.get_file(digest, target)
    assert sorted(p.name for p in target.iterdir()) == ["inside.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store", "target"], "a temporary file was left behind"


def test_a_download_under_a_regular_file_is_refused(objects: ObjectStore, tmp_path: Path) -> None:
    digest, _ = objects.put_bytes(b"payload")
    (tmp_path / "plain").write_text("not a directory")
    with pytest.raises(LocalFileError, match="cannot write"):
        objects.get_file(digest, tmp_path / "plain" / "out.bin")
    assert (tmp_path / "plain").read_text() == "not a directory"


def test_a_download_replaces_an_existing_file_whole(objects: ObjectStore, tmp_path: Path) -> None:
    digest, _ = objects.put_bytes(b"new content")
    dest = tmp_path / "out.bin"
    dest.write_bytes(b"old content that is longer")
    objects.get_file(digest, dest)
    assert dest.read_bytes() == b"new content"


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("{tmp}/plain/store", StoreUnavailableError),
        ("{tmp}/plain", StoreUnavailableError),
        ("file://{tmp}/plain/store", StoreUnavailableError),
        ("nosuchprotocol://bucket/x", StoreUnavailableError),
        ("", InvalidInputError),
        ("   ", InvalidInputError),
    ],
)
def test_an_unreachable_store_url_is_refused(tmp_path: Path, url: str, error: type[CasstoreError]) -> None:
    (tmp_path / "plain").write_text("a regular file")
    with pytest.raises(error) as caught:
        open_store(url.format(tmp=tmp_path))
    if error is StoreUnavailableError:
        assert isinstance(caught.value, OSError)
    assert (tmp_path / "plain").read_text() == "a regular file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain"]
