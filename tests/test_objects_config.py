"""The store config (casstore.json): refused when this casstore cannot honour it, created once."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3

from casstore.exceptions import StoreConfigError
from casstore.objects import DEFAULT_CHUNKER, ChunkerParams, StoreConfig, open_store
from casstore.objects.config import CONFIG_KEY, FORMAT_VERSION
from casstore.testing.processes import run_racers


def good_config() -> dict[str, Any]:
    d = json.loads(StoreConfig(created=1700000000.0).to_json())
    del d["b3"]
    return dict(d)


def with_changes(checked: bool = True, **changes: Any) -> bytes:
    """The good config with ``changes`` (``chunker__seed``: a chunker setting), carrying its check
    (as a casstore that wrote these settings would) unless ``checked`` is false."""
    d = good_config()
    for dotted, value in changes.items():
        target = d
        *path, last = dotted.split("__")
        for part in path:
            target = target[part]
        if value is _DROP:
            del target[last]
        else:
            target[last] = value
    if checked:
        d["b3"] = blake3(json.dumps(d, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return json.dumps(d).encode()


_DROP = object()

BAD_CONFIGS = {
    "newer format version": with_changes(version=FORMAT_VERSION + 1),
    "version zero": with_changes(version=0),
    "version as a string": with_changes(version="1"),
    "version as a bool": with_changes(version=True),
    "a setting this casstore does not know": with_changes(compression="zstd"),
    "created as a string": with_changes(created="yesterday"),
    "created as null": with_changes(created=None),
    "created as a list": with_changes(created=[1]),
    "unknown hash": with_changes(hash="sha256"),
    "no hash": with_changes(hash=_DROP),
    "not a casstore config": with_changes(format="zarr"),
    "no format": with_changes(format=_DROP),
    "unknown chunking algorithm": with_changes(chunker__algorithm="rabin"),
    "unknown chunker setting": with_changes(chunker__window=48),
    "chunker not an object": with_changes(chunker=[1, 2, 3]),
    "avg not a power of two": with_changes(chunker__avg_size=1_000_000),
    "min above avg": with_changes(chunker__min_size=2 << 20, chunker__max_size=8 << 20),
    "max below avg": with_changes(chunker__max_size=512 << 10),
    "avg too large": with_changes(chunker__avg_size=64 << 20, chunker__max_size=16 << 20),
    "min too small": with_changes(chunker__min_size=8),
    "size as a string": with_changes(chunker__min_size="262144"),
    "size as a bool": with_changes(chunker__min_size=True),
    "normalization as a bool": with_changes(chunker__normalization=True),
    "seed as a bool": with_changes(chunker__seed=True),
    "seed as a float": with_changes(chunker__seed=1.5),
    "normalization out of range": with_changes(chunker__normalization=9),
    "negative seed": with_changes(chunker__seed=-1),
    "malformed JSON": b'{"format": "casstore", "version": 1,',
    "empty file": b"",
    "binary garbage": bytes(range(256)),
    "JSON list": b"[1, 2, 3]",
    "JSON string": b'"casstore"',
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_a_config_this_casstore_cannot_honour_is_refused(tmp_path: Path, case: str) -> None:
    root = tmp_path / "store"
    root.mkdir()
    (root / CONFIG_KEY).write_bytes(BAD_CONFIGS[case])
    with pytest.raises(StoreConfigError) as caught:
        open_store(root)
    assert CONFIG_KEY in str(caught.value), f"the error does not say where: {caught.value}"
    assert sorted(p.name for p in root.iterdir()) == [CONFIG_KEY], "opening a refused store wrote into it"
    assert (root / CONFIG_KEY).read_bytes() == BAD_CONFIGS[case]


def test_the_good_config_used_above_opens(tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    (root / CONFIG_KEY).write_bytes(with_changes())
    assert open_store(root).config == StoreConfig(created=1700000000.0)


@pytest.mark.parametrize("version", [1, 2, 3])
def test_a_new_store_has_the_current_version_and_an_older_store_keeps_its_version(tmp_path: Path, version: int) -> None:
    assert json.loads((open_store(tmp_path / "new").backend.get(CONFIG_KEY)))["version"] == FORMAT_VERSION == 6
    old = tmp_path / "old"
    old.mkdir()
    (old / CONFIG_KEY).write_bytes(with_changes(version=version))
    assert open_store(old).config.version == version
    assert (old / CONFIG_KEY).read_bytes() == with_changes(version=version), "opening rewrote the config"


def test_a_newer_version_says_to_upgrade(tmp_path: Path) -> None:
    (tmp_path / CONFIG_KEY).write_bytes(with_changes(version=7))
    with pytest.raises(StoreConfigError, match="Upgrade casstore") as e:
        open_store(tmp_path)
    # casstore installs from its repository: the package index has no casstore to upgrade to
    assert "pip install ." in str(e.value) and "pip install -U casstore" not in str(e.value)


def test_the_chunker_of_an_existing_store_is_kept_and_cannot_be_changed(tmp_path: Path) -> None:
    small = ChunkerParams(min_size=1024, avg_size=4096, max_size=16384)
    created = open_store(tmp_path / "s", chunker=small).config
    assert open_store(tmp_path / "s").config == created
    assert open_store(tmp_path / "s", chunker=small).config == created
    with pytest.raises(StoreConfigError, match="fixed when a store is created"):
        open_store(tmp_path / "s", chunker=DEFAULT_CHUNKER)


def test_opening_with_create_false_refuses_a_missing_store(tmp_path: Path) -> None:
    with pytest.raises(StoreConfigError):
        open_store(tmp_path / "nothing-here", create=False)
    with pytest.raises(StoreConfigError):
        open_store("memory://no-store-here", create=False)
    assert not (tmp_path / "nothing-here" / CONFIG_KEY).exists()


def test_a_non_empty_directory_that_is_not_a_store_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    (tmp_path / "data").mkdir()
    with pytest.raises(StoreConfigError, match="not a casstore store"):
        open_store(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "notes.txt"]
    assert (tmp_path / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("attempt", range(10))
def test_threads_creating_one_store_agree_on_its_config(tmp_path: Path, attempt: int) -> None:
    root = tmp_path / "store"
    n = 16
    barrier = threading.Barrier(n)
    configs: list[StoreConfig] = []
    errors: list[BaseException] = []

    def opener() -> None:
        try:
            barrier.wait(timeout=30)
            configs.append(open_store(root).config)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=opener) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    on_disk = StoreConfig.from_json((root / CONFIG_KEY).read_bytes(), "test")
    assert configs == [on_disk] * n


def _open_and_report(root: str, barrier: Any, results: Any) -> None:
    try:
        barrier.wait(timeout=60)
        results.put(open_store(root).config.to_json())
    except BaseException as e:
        results.put(f"{type(e).__name__}: {e}".encode())


def test_processes_creating_one_store_agree_on_its_config(tmp_path: Path) -> None:
    root = tmp_path / "store"
    reports = run_racers(_open_and_report, [(str(root),)] * 4)
    assert reports == [(root / CONFIG_KEY).read_bytes()] * 4


def test_every_single_bit_flip_of_a_new_config_is_refused_and_named(tmp_path: Path) -> None:
    """The config carries its own BLAKE3: no flipped bit opens the store, and what is wrong is said."""
    root = tmp_path / "store"
    open_store(root)
    path = root / CONFIG_KEY
    original = path.read_bytes()
    assert "b3" in json.loads(original)
    opened = []
    for i in range(len(original)):
        for bit in range(8):
            data = bytearray(original)
            data[i] ^= 1 << bit
            path.write_bytes(bytes(data))
            try:
                open_store(root, create=False)
            except StoreConfigError as e:
                assert CONFIG_KEY in str(e)
                continue
            opened.append((i, bit))
    assert opened == []
    path.write_bytes(original)
    assert open_store(root).config.checked


@pytest.mark.parametrize("change", ["a setting", "the check", "the check's name"])
def test_a_damaged_config_says_it_is_damaged_and_how_to_restore_it(tmp_path: Path, change: str) -> None:
    root = tmp_path / "store"
    open_store(root)
    d = json.loads((root / CONFIG_KEY).read_bytes())
    if change == "a setting":
        d["chunker"]["avg_size"] *= 2
    elif change == "the check":
        d["b3"] = "0" * 64
    else:
        d["b4"] = d.pop("b3")
    (root / CONFIG_KEY).write_text(json.dumps(d))
    with pytest.raises(StoreConfigError, match=r"casstore.json is damaged: .* Restore casstore.json from a backup"):
        open_store(root)


def test_a_config_written_before_checks_opens_and_upgrade_adds_its_check(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from casstore.cli import cli

    root = tmp_path / "store"
    root.mkdir()
    (root / CONFIG_KEY).write_bytes(with_changes(checked=False))
    config = open_store(root).config
    assert not config.checked and config == StoreConfig(created=1700000000.0)
    r = CliRunner().invoke(cli, ["upgrade", "--store", str(root)])
    assert r.exit_code == 0 and "now carries its own check" in r.output, r.output
    again = open_store(root).config
    assert again.checked and again == config
    assert CliRunner().invoke(cli, ["upgrade", "--store", str(root)]).exit_code != 0  # nothing left to do
