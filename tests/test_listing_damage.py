"""A sealed run whose seal is damaged or gone is named, never hidden, by every listing.

The search index answers listings (`casstore runs`, `search_runs`, the UI) from summaries,
each checked against its run's seal the first time a machine's cache shows it. A seal that
fails that check, or that is missing, must cost that run alone, with a warning naming it:
never the whole listing, and never a silent disappearance (a teammate's fresh cache, a CI
machine). The damaged run still reads as far as it can, and `verify --all` names the seal.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from casstore.exceptions import CasstoreError, DamagedRunWarning
from casstore.objects import open_store
from casstore.runs import RunStore, layout


def _populate(url: str) -> tuple[str, str, str]:
    """Three sealed runs: one with an artifact, one with params and metrics only, and one to
    show that the others' damage costs nothing else."""
    store = RunStore(open_store(url, create=True))
    exp = store.get_or_create_experiment("damage")
    ids = []
    for name, artifact in (("with-files", True), ("params-only", False), ("intact", False)):
        h = store.create_run(exp, run_name=name)
        h.log_param("lr", "0.1")
        h.log_metric("acc", 0.9, step=1)
        if artifact:
            h.log_bytes("notes.txt", os.urandom(40_000))
        h.end()
        ids.append(h.run_id)
    store.search_runs(None)  # the index's summaries are written and this machine's cache has them
    return ids[0], ids[1], ids[2]


def _fresh_listing(url: str, cache: Path) -> tuple[list[str], list[str]]:
    """What a machine with a new cache lists: the run ids, and the warnings given."""
    os.environ["CASSTORE_CACHE_DIR"] = str(cache)
    store = RunStore(open_store(url))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ids = [v.run_id for v in store.search_runs(None)]
    return ids, [str(w.message) for w in caught if issubclass(w.category, DamagedRunWarning)]


def _replace(url: str, key: str, data: bytes | None) -> None:
    backend = open_store(url).backend
    backend.delete(key)
    if data is not None:
        backend.put_if_absent(key, data)


def test_every_flipped_byte_of_a_seal_costs_that_run_alone_on_a_fresh_cache(tmp_path: Path) -> None:
    url = str(tmp_path / "store")
    files, params_only, intact = _populate(url)
    key = layout.seal_key(params_only)
    good = open_store(url).backend.get(key)
    shown = skipped = 0
    for i, at in enumerate(range(0, len(good), 5)):
        bad = bytearray(good)
        bad[at] ^= 0x01
        _replace(url, key, bytes(bad))
        ids, said = _fresh_listing(url, tmp_path / f"cache-{i}")
        assert files in ids and intact in ids
        if params_only in ids:  # the manifest inside verifies: shown, and the damage named
            shown += 1
            assert any(params_only in w and "seal" in w for w in said), (at, said)
        else:
            skipped += 1
            assert any(f"run {params_only} is skipped" in w and key in w for w in said), (at, said)
    assert skipped > 0  # a flip inside the manifest: the run (which kept its seal only) cannot be shown


def test_a_damaged_seal_on_s3_costs_that_run_alone_on_a_fresh_cache(s3_url: str, tmp_path: Path) -> None:
    files, params_only, intact = _populate(s3_url)
    key = layout.seal_key(params_only)
    bad = bytearray(open_store(s3_url).backend.get(key))
    bad[len(bad) // 2] ^= 0x01
    _replace(s3_url, key, bytes(bad))
    ids, said = _fresh_listing(s3_url, tmp_path / "cache")
    assert files in ids and intact in ids  # the rest of the store is listed
    assert any(params_only in w for w in said)  # and the damaged run is named, shown from its records or skipped


def test_a_lost_seal_of_a_run_with_artifacts_is_named_by_listings_show_and_verify(tmp_path: Path) -> None:
    url = str(tmp_path / "store")
    files, _params_only, intact = _populate(url)
    key = layout.seal_key(files)
    held = open_store(url).backend.get(key)
    _replace(url, key, None)
    env = {**os.environ, "CASSTORE_CACHE_DIR": str(tmp_path / "other-machine")}
    cli = [sys.executable, "-m", "casstore.cli", "--store", url]
    for _ in range(2):  # a fresh cache, then the same cache again: named both times
        r = subprocess.run([*cli, "runs", "--json"], env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert files not in [x["run_id"] for x in json.loads(r.stdout)]
        assert f"run {files} is skipped" in r.stderr and key in r.stderr
    r = subprocess.run([*cli, "show", files], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"Restore {key} from a backup" in r.stderr
    r = subprocess.run([*cli, "verify", "--all"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and f"MISSING {key}" in r.stdout
    _replace(url, key, held)  # restored: listed again, with no warning
    ids, said = _fresh_listing(url, tmp_path / "other-machine")
    assert files in ids and intact in ids and not said


def test_a_lost_seal_of_a_run_without_artifacts_is_named_by_every_later_listing(tmp_path: Path) -> None:
    """Such a run on a local disk kept its seal only: the search index is what still says
    it was sealed, and the cache remembers it once it has read it."""
    url = str(tmp_path / "store")
    files, params_only, intact = _populate(url)
    key = layout.seal_key(params_only)
    held = open_store(url).backend.get(key)
    _replace(url, key, None)
    for _ in range(2):
        ids, said = _fresh_listing(url, tmp_path / "other-machine")
        assert sorted(ids) == sorted([files, intact])
        assert any(f"run {params_only} is skipped" in w and key in w for w in said), said
    r = subprocess.run([sys.executable, "-m", "casstore.cli", "--store", url, "verify", "--all"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and key in r.stdout  # the seal to restore is named
    _replace(url, key, held)
    ids, said = _fresh_listing(url, tmp_path / "other-machine")
    assert params_only in ids and not said


def test_a_run_that_never_reached_the_disk_stays_out_silently(tmp_path: Path) -> None:
    """An experiment entry whose run meta was lost with the power (and nothing else of the
    run exists) is no damage: listings pass over it without a warning."""
    url = str(tmp_path / "store")
    store = RunStore(open_store(url, create=True))
    exp = store.get_or_create_experiment("damage")
    h = store.create_run(exp, run_name="unborn")
    _replace(url, layout.run_meta_key(h.run_id), None)
    ids, said = _fresh_listing(url, tmp_path / "cache")
    assert h.run_id not in ids and not said
    with pytest.raises(CasstoreError, match="no run"):
        RunStore(open_store(url)).get_run(h.run_id)
