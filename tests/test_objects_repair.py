"""Storing content again repairs what a crash can leave under an object's name.

A killed writer on a file system without atomic publication (the generic fsspec backend
writes in place), or a power loss on a local disk before the durability barrier, can
leave a chunk or a recipe under its final name that is empty, cut short or garbled, or
no chunk at all under a recipe that survived. A writer that deduplicated against such an
object would publish a record pointing at data that cannot be read. So a writer takes an
object for stored only when it is whole (its length; a recipe that decodes, names the
file's size and whose chunks are whole), and otherwise writes it again.

These are the loose layout's objects (a chunk under its own name), so the stores here are
loose whatever ``CASSTORE_LAYOUT`` says; a pack that is gone or damaged is tested in
tests/test_packs.py.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import fsspec
import pytest

from casstore.backend import FsspecBackend
from casstore.objects import ObjectStore, open_objects, open_store
from casstore.testing import strategies as cst

SIZE = 200_000  # several chunks of the small chunker


def _local(root: Path) -> ObjectStore:
    return open_store(root, chunker=cst.SMALL_CHUNKER, layout="loose")


def _fsspec(root: Path) -> ObjectStore:  # concurrency 8: the batched chunk path
    return open_objects(FsspecBackend(fsspec.filesystem("file"), str(root)), chunker=cst.SMALL_CHUNKER, layout="loose")


OPENERS = {"local": _local, "fsspec": _fsspec}


def _path(root: Path, key: str) -> Path:
    return root.joinpath(*key.split("/"))


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "deleted":
        path.unlink()
    elif how == "emptied":
        path.write_bytes(b"")
    elif how == "cut short":
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbled, same length":
        path.write_bytes(bytes(len(data)))
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("backend", sorted(OPENERS))
@pytest.mark.parametrize("how", ["deleted", "emptied", "cut short"])
@pytest.mark.parametrize("which", [0, 1, -1])
def test_storing_again_rewrites_a_chunk_that_is_not_whole(tmp_path: Path, backend: str, how: str, which: int) -> None:
    root = tmp_path / "store"
    objects: ObjectStore = OPENERS[backend](root)
    src = tmp_path / "model.bin"
    src.write_bytes(random.Random(which).randbytes(SIZE))
    digest, _ = objects.put_file(src)
    chunks = objects.recipe(digest).chunks
    assert len(chunks) > 2
    _damage(_path(root, objects.layout.chunk_key(chunks[which][0])), how)

    assert objects.put_file(src).digest == digest
    assert objects.get_bytes(digest) == src.read_bytes()
    objects.verify_file(digest)


@pytest.mark.parametrize("backend", sorted(OPENERS))
@pytest.mark.parametrize("how", ["deleted", "emptied", "cut short", "garbled, same length"])
def test_storing_again_rewrites_a_recipe_that_is_not_whole(tmp_path: Path, backend: str, how: str) -> None:
    root = tmp_path / "store"
    objects: ObjectStore = OPENERS[backend](root)
    data = random.Random(7).randbytes(SIZE)
    digest, _ = objects.put_bytes(data)
    _damage(_path(root, objects.layout.recipe_key(digest)), how)

    assert objects.put_bytes(data).digest == digest
    assert objects.get_bytes(digest) == data


@pytest.mark.parametrize("backend", sorted(OPENERS))
@pytest.mark.parametrize("how", ["emptied", "cut short"])
@pytest.mark.parametrize("put", ["put_bytes", "put_file"])
def test_storing_again_rewrites_a_file_of_one_chunk_that_is_not_whole(
    tmp_path: Path, backend: str, how: str, put: str
) -> None:
    """A file of one chunk is stored as that chunk alone (no recipe): the chunk is the file."""
    root = tmp_path / "store"
    objects: ObjectStore = OPENERS[backend](root)
    sizes: dict[str, Callable[[], int]] = {
        "put_bytes": lambda: cst.SMALL_CHUNKER.min_size // 2,  # certainly one chunk
        "put_file": lambda: cst.SMALL_CHUNKER.min_size + 1,  # may be one chunk: checked first
    }
    data = random.Random(3).randbytes(sizes[put]())
    src = tmp_path / "small.bin"
    src.write_bytes(data)
    digest = objects.put_bytes(data).digest if put == "put_bytes" else objects.put_file(src).digest
    assert objects.recipe(digest).chunks == ((digest, len(data)),), "the test needs a file of one chunk"
    _damage(_path(root, objects.layout.chunk_key(digest)), how)

    again = objects.put_bytes(data) if put == "put_bytes" else objects.put_file(src)
    assert again.digest == digest
    assert objects.get_bytes(digest) == data
