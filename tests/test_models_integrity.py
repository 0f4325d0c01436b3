"""Guarantee 7: a tampered byte anywhere in a model raises IntegrityError before any unpickling,
whether the model's data file is held in memory or written to a private directory."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from blake3 import blake3
from tracking_helpers import tracking  # noqa: F401  (fixture)

import casstore
import casstore.sklearn
from casstore.exceptions import CorruptRecordError, IntegrityError, InvalidInputError
from casstore.models import fetch
from casstore.models.entry import ModelEntry
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


@pytest.fixture(params=["disk", "memory"])
def marked(request: pytest.FixtureRequest, tracking: str, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, casstore.models.ModelInfo]]:
    """A registered model that leaves a mark when unpickled; its data file fetched into the
    private directory (``disk``) or held in memory (``memory``: the path of large models)."""
    monkeypatch.setattr(fetch, "HOLD_MIN", 1 << 20 if request.param == "memory" else 1 << 40)
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
    fetched = fetch.fetch_model(get_store(), info.model_digest)
    assert set(fetched.held) == ({"model.pkl"} if request.param == "memory" else set())
    fetched.cleanup()
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


def _same_size_twin(info: casstore.models.ModelInfo) -> str:
    """Log another model whose pickle has the size of ``info``'s; the digest of its data file."""
    with casstore.start_run():
        twin = casstore.sklearn.log_model(MarkingModel(np.random.default_rng(1).random(400_000)), "twin",
                                          serialization_format="pickle")
    store = get_store()
    ours = store.load_model_entry(info.model_digest)["files"]["model.pkl"]
    theirs = store.load_model_entry(twin.model_digest)["files"]["model.pkl"]
    assert theirs["size"] == ours["size"] and theirs["digest"] != ours["digest"]
    return str(theirs["digest"])


def _unpinned(info: casstore.models.ModelInfo) -> str:
    """The model of ``info`` as an earlier casstore logged it (no recipe pins): its ``cas:`` URI."""
    store = get_store()
    entry = store.load_model_entry(info.model_digest)
    for f in entry["files"].values():
        f.pop("recipe", None)
    return f"cas:{store.put_model_entry(entry)}"


def _swap_recipe(info: casstore.models.ModelInfo, donor_digest: str) -> tuple[Path, bytes]:
    """Replace the recipe of ``info``'s data file by the recipe of file ``donor_digest``."""
    entry = get_store().load_model_entry(info.model_digest)
    victim = _local(recipe_key(entry["files"]["model.pkl"]["digest"]))
    original = victim.read_bytes()
    os.chmod(victim, 0o644)
    victim.write_bytes(_local(recipe_key(donor_digest)).read_bytes())
    return victim, original


def test_a_recipe_pin_is_optional_and_must_be_a_digest() -> None:
    d, r = "0" * 64, "ab" * 32
    unpinned = {"v": 1, "kind": "model", "name": "m", "flavors": {}, "files": {"a": {"digest": d, "size": 1}}}
    entry = ModelEntry.from_dict(unpinned)
    assert entry.files["a"].recipe is None
    assert entry.to_dict()["files"] == {"a": {"digest": d, "size": 1}}  # absent, not nil: the same bytes
    pinned = ModelEntry.from_dict({**unpinned, "files": {"a": {"digest": d, "size": 1, "recipe": r}}})
    assert pinned.files["a"].recipe == r and pinned.to_dict()["files"]["a"] == {"digest": d, "size": 1, "recipe": r}
    for bad in (None, "x", 3, r.upper()):
        with pytest.raises(CorruptRecordError, match="malformed file record"):
            ModelEntry.from_dict({**unpinned, "files": {"a": {"digest": d, "size": 1, "recipe": bad}}})


def test_the_entry_pins_the_recipe_of_every_file_that_has_one(marked: tuple[Path, Any]) -> None:
    _, info = marked
    files = get_store().load_model_entry(info.model_digest)["files"]
    assert "recipe" in files["model.pkl"]  # the data file spans several chunks
    for f in files.values():
        recipe = _local(recipe_key(f["digest"]))
        if "recipe" in f:
            assert f["recipe"] == blake3(recipe.read_bytes()).hexdigest()
        else:  # a file of one chunk is that chunk, stored without a recipe: nothing to pin
            assert not recipe.exists() and _local(chunk_key(f["digest"])).exists()


def test_a_recipe_swapped_for_another_valid_one_is_caught_by_its_pin(marked: tuple[Path, Any]) -> None:
    # the donor lists valid chunks adding up to the recorded size: only the pin tells it apart
    mark, info = marked
    victim, original = _swap_recipe(info, _same_size_twin(info))
    try:
        for load in LOADERS:
            for uri in URIS + [info.model_uri, info.cas_uri]:
                with pytest.raises(IntegrityError, match="model file 'model.pkl'.*not the one the model entry pins"):
                    load(uri)
    finally:
        victim.write_bytes(original)
    assert not mark.exists()


def test_a_recipe_swapped_in_a_model_logged_without_pins_is_caught_by_the_whole_file_digest(
    marked: tuple[Path, Any],
) -> None:
    mark, info = marked
    uri = _unpinned(info)
    victim, original = _swap_recipe(info, _same_size_twin(info))
    try:
        for load in LOADERS:
            with pytest.raises(IntegrityError, match="do not make up the recorded file"):
                load(uri)
    finally:
        victim.write_bytes(original)
    assert not mark.exists()


def test_a_model_logged_without_pins_still_loads_and_its_chunks_are_checked(marked: tuple[Path, Any]) -> None:
    mark, info = marked
    uri = _unpinned(info)
    for rel, digest in _all_chunks(info)[:: 3]:
        path = _local(chunk_key(digest))
        original = _flip(path)
        try:
            with pytest.raises(IntegrityError, match=digest):
                casstore.sklearn.load_model(uri)
        finally:
            path.write_bytes(original)
        assert not mark.exists(), f"{rel} chunk {digest} was tampered, yet the model was unpickled"
    assert casstore.pyfunc.load_model(uri).predict([[0.0]]).shape == (1,)
    assert mark.exists()


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


# ---- where the files go ------------------------------------------------------------------


@pytest.fixture
def logged(tracking: str, monkeypatch: pytest.MonkeyPatch) -> casstore.models.ModelInfo:
    monkeypatch.setattr(fetch, "HOLD_MIN", 1 << 20)
    with casstore.start_run():
        return casstore.sklearn.log_model(Payload(np.arange(400_000, dtype=np.float64)), "m",
                                          serialization_format="pickle")


class Payload:
    def __init__(self, payload: np.ndarray) -> None:
        self.payload = payload

    def predict(self, X: Any) -> np.ndarray:
        return np.full(len(X), float(self.payload[-1]))


def _on_disk(fetched: fetch.FetchedModel) -> set[str]:
    return {str(p.relative_to(fetched.path)).replace(os.sep, "/") for p in Path(fetched.path).rglob("*") if p.is_file()}


@pytest.mark.parametrize("budget", ["ample", "tight", "none"])
def test_large_files_are_held_in_memory_within_the_budget(logged: casstore.models.ModelInfo,
                                                          monkeypatch: pytest.MonkeyPatch, budget: str) -> None:
    files = get_store().load_model_entry(logged.model_digest)["files"]
    size = files["model.pkl"]["size"]
    assert size > fetch.HOLD_MIN and all(f["size"] < fetch.HOLD_MIN for p, f in files.items() if p != "model.pkl")
    monkeypatch.setattr(fetch, "MEMORY_MAX", {"ample": 1 << 30, "tight": size, "none": size - 1}[budget])
    fetched = fetch.fetch_model(get_store(), logged.model_digest)
    try:
        held = set() if budget == "none" else {"model.pkl"}
        assert set(fetched.held) == held
        assert _on_disk(fetched) == set(files) - held
        for rel in files:
            with fetched.take(rel) as f:
                assert blake3(f.read()).hexdigest() == files[rel]["digest"]
        if held:
            with pytest.raises(InvalidInputError, match="read already"):
                fetched.take("model.pkl")
    finally:
        fetched.cleanup()
    assert casstore.sklearn.load_model(logged.model_uri).predict([[0.0]]).tolist() == [399_999.0]


def test_a_destination_directory_gets_every_file(logged: casstore.models.ModelInfo, tmp_path: Path) -> None:
    files = get_store().load_model_entry(logged.model_digest)["files"]
    model = casstore.sklearn.load_model(logged.model_uri, dst_path=tmp_path / "dst")
    assert model.predict([[0.0]]).tolist() == [399_999.0]
    assert {p: blake3(Path(tmp_path, "dst", p).read_bytes()).hexdigest() for p in files} == \
        {p: f["digest"] for p, f in files.items()}
