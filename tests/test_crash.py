"""Crash safety: a writer killed with SIGKILL at any moment leaves a consistent store.

A child process stores a 48 MiB file into a local store (small chunks, so there are
hundreds of objects) and is killed at seeded random moments. After each kill the
store is checked from the outside, reading the files on disk with msgpack and
BLAKE3 and never with casstore: every visible chunk hashes to its name, every
visible recipe decodes and its chunks exist and make up the file it names. Then
storing the file again completes and reads back exactly.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import msgpack
import pytest
from blake3 import blake3

import casstore
from casstore.objects import open_store

REPO = str(Path(casstore.__file__).resolve().parent.parent)
SEED = int(os.environ.get("CASSTORE_CRASH_SEED", "20251123"))
MIB = 1 << 20

_CHILD = textwrap.dedent(
    """
    import sys, time
    from casstore.objects import ChunkerParams, open_store
    print("ready", flush=True)
    start = time.perf_counter()
    objects = open_store(sys.argv[1], chunker=ChunkerParams(min_size=16384, avg_size=65536, max_size=262144))
    digest, size = objects.put_file(sys.argv[2])
    objects.flush()
    print("done", digest, time.perf_counter() - start, flush=True)
    """
)


def _spawn(store: Path, src: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(store), str(src)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _store_to_completion(store: Path, src: Path) -> tuple[str, float]:
    proc = _spawn(store, src)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, f"storing did not complete (exit {proc.returncode})"
    _, digest, seconds = out.split()
    return digest, float(seconds)


def _kill_after(store: Path, src: Path, delay: float) -> int:
    proc = _spawn(store, src)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    return proc.returncode


def _visible(root: Path, kind: str) -> dict[str, Path]:
    """Objects a reader can see under ``kind/`` (temporary files start with a dot)."""
    base = root / kind
    if not base.exists():
        return {}
    return {p.name: p for p in base.rglob("*") if p.is_file() and not p.name.startswith(".")}


def check_consistent(root: Path, where: str) -> tuple[int, int]:
    """Assert the store at ``root`` is consistent; return the numbers of chunks and recipes."""
    config = root / "casstore.json"
    if config.exists():
        assert json.loads(config.read_bytes())["format"] == "casstore", f"{where}: casstore.json is partial"
    chunks = _visible(root, "chunks")
    for name, path in chunks.items():
        assert blake3(path.read_bytes()).hexdigest() == name, f"{where}: chunk {name} is partial or corrupt"
        assert path.parent.name == name[2:4] and path.parent.parent.name == name[:2], f"{where}: misplaced {name}"
    recipes = _visible(root, "files")
    for name, path in recipes.items():
        recipe = msgpack.unpackb(path.read_bytes(), raw=False)  # a partial recipe does not decode
        assert recipe["v"] == 1 and sum(n for _, n in recipe["chunks"]) == recipe["size"], f"{where}: recipe {name}"
        whole = blake3()
        for digest, length in recipe["chunks"]:
            assert digest in chunks, f"{where}: recipe {name} names chunk {digest}, which is not in the store"
            data = chunks[digest].read_bytes()
            assert len(data) == length, f"{where}: chunk {digest} has the wrong length"
            whole.update(data)
        assert whole.hexdigest() == name, f"{where}: recipe {name} does not make up the file it names"
    return len(chunks), len(recipes)


@pytest.mark.slow
def test_a_writer_killed_at_any_moment_leaves_a_consistent_store(tmp_path: Path) -> None:
    src = tmp_path / "model.bin"
    rng = random.Random(SEED)
    with open(src, "wb") as f:
        for _ in range(48):
            f.write(rng.randbytes(MIB))
    expected = blake3(src.read_bytes()).hexdigest()

    # how long an uninterrupted store takes here, so the kills land inside it
    digest, duration = _store_to_completion(tmp_path / "calibration", src)
    assert digest == expected
    check_consistent(tmp_path / "calibration", "after an uninterrupted store")

    # kills into fresh stores (first writes), then repeatedly into one store (resumed work)
    plan = [(tmp_path / f"fresh{i}", rng.uniform(0, 1.2 * duration)) for i in range(4)]
    plan += [(tmp_path / "resumed", rng.uniform(0, 1.2 * duration)) for _ in range(5)]
    killed = 0
    for i, (store, delay) in enumerate(plan):
        code = _kill_after(store, src, delay)
        killed += code == -signal.SIGKILL
        check_consistent(store, f"after kill {i} at {delay:.3f}s (seed {SEED})")
    assert killed >= len(plan) // 2, "most writers finished before the kill: the kills did not test anything"

    for store in (tmp_path / "fresh0", tmp_path / "resumed"):
        digest, _ = _store_to_completion(store, src)
        assert digest == expected
        check_consistent(store, "after storing again")
        objects = open_store(store)
        assert objects.get_bytes(digest) == src.read_bytes()
        objects.get_file(digest, tmp_path / "back.bin")
        assert blake3((tmp_path / "back.bin").read_bytes()).hexdigest() == expected
