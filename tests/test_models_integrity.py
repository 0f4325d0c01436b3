"""Guarantee 7: a tampered byte anywhere in a model raises IntegrityError before any unpickling."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tracking_helpers import tracking  # noqa: F401  (fixture)

import casstore
import casstore.sklearn
from casstore.exceptions import IntegrityError
from casstore.models import fetch
from casstore.tracking.uri import get_store

MARK_ENV = "CASSTORE_TEST_UNPICKLE_MARK"


class MarkingModel:
    """A model that leaves a file behind whenever it is unpickled."""

    def __init__(self, payload: np.ndarray) -> None:
        self.payload = payload

    def predict(self, X: Any) -> np.ndarray:
        return np.full(len(X), float(self.payload[0]))

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        Path(os.environ[MARK_ENV]).write_text("unpickled")


@pytest.fixture(params=["get_file", "pipelined"])
def marked(request: pytest.FixtureRequest, tracking: str, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, casstore.models.ModelInfo]]:
    """A registered model that leaves a mark when unpickled; fetched through ``get_file``
    or through the pipelined reader used for large files."""
    if request.param == "pipelined":
        monkeypatch.setattr(fetch, "PARALLEL_MIN", 0)
    mark = tmp_path / "mark"
    monkeypatch.setenv(MARK_ENV, str(mark))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    payload = np.random.default_rng(0).random(400_000)  # ~3 MB: several chunks
    with casstore.start_run():
        info = casstore.sklearn.log_model(MarkingModel(payload), "m", serialization_format="pickle",
                                          registered_model_name="marked")
    assert not mark.exists()
    yield mark, info
    assert os.listdir(scratch) == [], "a failed load left files behind"


def _local(key: str) -> Path:
    return Path(get_store().backend.root, *key.split("/"))  # type: ignore[attr-defined]


def chunk_key(digest: str) -> str:
    return get_store().objects.layout.chunk_key(digest)


def recipe_key(digest: str) -> str:
    return get_store().objects.layout.recipe_key(digest)


def model_entry_key(digest: str) -> str:
    return get_store().objects.layout.model_key(digest)


def _flip(path: Path) -> bytes:
    original = path.read_bytes()
    data = bytearray(original)
    data[len(data) // 2] ^= 0x01
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))
    return original


LOADERS: list[Callable[[str], Any]] = [casstore.sklearn.load_model, casstore.pyfunc.load_model]
URIS = ["models:/marked/1", "models:/marked/latest"]


def _all_chunks(info: casstore.models.ModelInfo) -> list[tuple[str, str]]:
    store = get_store()
    entry = store.load_model_entry(info.model_digest)
    out = []
    for rel, f in sorted(entry["files"].items()):
        for d in store.objects.chunk_digests(f["digest"]):
            out.append((rel, d))
    return out


def test_every_tampered_chunk_is_caught_before_unpickling(marked: tuple[Path, Any]) -> None:
    mark, info = marked
    chunks = _all_chunks(info)
    assert sum(1 for rel, _ in chunks if rel == "model.pkl") >= 2
    for rel, digest in chunks:
        path = _local(chunk_key(digest))
        original = _flip(path)
        try:
            for load in LOADERS:
                for uri in URIS + [info.model_uri, info.cas_uri]:
                    with pytest.raises(IntegrityError, match=digest):
                        load(uri)
                    assert not mark.exists(), f"{rel} chunk {digest} was tampered, yet the model was unpickled"
        finally:
            path.write_bytes(original)
    # untampered, the same model loads, and loading it does leave the mark
    assert casstore.pyfunc.load_model("models:/marked/1").predict([[0.0]]).shape == (1,)
    assert mark.exists()


def test_a_tampered_model_entry_is_caught(marked: tuple[Path, Any]) -> None:
    mark, info = marked
    path = _local(model_entry_key(info.model_digest))
    original = _flip(path)
    try:
        for load in LOADERS:
            with pytest.raises(IntegrityError, match="model entry"):
                load("models:/marked/1")
    finally:
        path.write_bytes(original)
    assert not mark.exists()


def test_a_swapped_recipe_is_caught_by_the_whole_file_digest(marked: tuple[Path, Any]) -> None:
    mark, info = marked
    entry = get_store().load_model_entry(info.model_digest)
    model_file = _local(recipe_key(entry["files"]["model.pkl"]["digest"]))
    # MLmodel is one chunk, stored without a recipe: its recipe is that chunk
    other = get_store().objects.recipe(entry["files"]["MLmodel"]["digest"])
    assert len(other.chunks) == 1
    original = model_file.read_bytes()
    os.chmod(model_file, 0o644)
    model_file.write_bytes(other.encode())  # a valid chunk, wrong file
    try:
        with pytest.raises(IntegrityError):
            casstore.sklearn.load_model("models:/marked/1")
    finally:
        model_file.write_bytes(original)
    assert not mark.exists()


def test_a_chunk_replaced_by_another_valid_chunk_is_caught(marked: tuple[Path, Any]) -> None:
    mark, info = marked
    chunks = [d for rel, d in _all_chunks(info) if rel == "model.pkl"]
    victim, donor = _local(chunk_key(chunks[0])), _local(chunk_key(chunks[1]))
    original = victim.read_bytes()
    os.chmod(victim, 0o644)
    victim.write_bytes(donor.read_bytes())
    try:
        with pytest.raises(IntegrityError, match=chunks[0]):
            casstore.pyfunc.load_model("models:/marked/1")
    finally:
        victim.write_bytes(original)
    assert not mark.exists()
