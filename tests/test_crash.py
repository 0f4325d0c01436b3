"""Crash safety: a writer killed with SIGKILL at any moment leaves a consistent store.

A child process stores a 48 MiB file into a local store (small chunks, so there are
hundreds of objects) and is killed at seeded random moments: once it has chunked a
random part of the file (its writes still in flight), or a random time after it started. After each kill the
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
    import sys
    from casstore.objects import ChunkerParams, open_store
    print("ready", flush=True)
    # chunks as objects of their own, checked file by file below (packs: tests/test_packs.py)
    objects = open_store(sys.argv[1], chunker=ChunkerParams(min_size=16384, avg_size=65536, max_size=262144), layout="loose")
    done = 0

    def report(n):
        global done
        done += n
        print(done, flush=True)

    digest, size = objects.put_file(sys.argv[2], progress=report)
    objects.flush()
    print("done", digest, flush=True)
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


def _store_to_completion(store: Path, src: Path) -> str:
    proc = _spawn(store, src)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, f"storing did not complete (exit {proc.returncode})"
    return out.split()[-1]


def _kill_at(store: Path, src: Path, moment: tuple[str, float]) -> bool:
    """Kill a storing child at ``("bytes", n)``: once it has chunked ``n`` bytes (its
    writes are still in flight), or at ``("seconds", t)`` after it started. Return
    whether it was killed before it finished."""
    proc = _spawn(store, src)
    assert proc.stdout is not None
    kind, at = moment
    if kind == "seconds":
        time.sleep(at)
    else:
        for line in proc.stdout:
            if line.startswith("done") or int(line) >= at:
                break
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    return proc.returncode == -signal.SIGKILL


def _visible(root: Path, kind: str) -> dict[str, Path]:
    """Objects a reader can see under ``kind/`` (temporary files start with a dot)."""
    base = root / kind
    if not base.exists():
        return {}
    return {p.name: p for p in base.rglob("*") if p.is_file() and not p.name.startswith(".")}


def check_consistent(root: Path, where: str) -> tuple[int, int]:
    """Assert the store at ``root`` is consistent; return the numbers of chunks and recipes."""
    config = root / "casstore.json"
    version = 2
    if config.exists():
        cfg = json.loads(config.read_bytes())
        assert cfg["format"] == "casstore", f"{where}: casstore.json is partial"
        version = cfg["version"]
    chunks = _visible(root, "chunks")
    for name, path in chunks.items():
        assert blake3(path.read_bytes()).hexdigest() == name, f"{where}: chunk {name} is partial or corrupt"
        fanout = [name[:2]] if version >= 2 else [name[:2], name[2:4]]  # format version 1: ab/cd/
        assert list(path.relative_to(root / "chunks").parts[:-1]) == fanout, f"{where}: misplaced {name}"
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
    size = 48 * MIB
    with open(src, "wb") as f:
        for _ in range(size // MIB):
            f.write(rng.randbytes(MIB))
    expected = blake3(src.read_bytes()).hexdigest()

    # into fresh stores: at any point of the storing pass, after its last chunk (the last
    # writes, the recipe and the flush still to come), or while it starts
    plan: list[tuple[Path, tuple[str, float]]] = [(tmp_path / f"fresh{i}", ("bytes", rng.uniform(0, size))) for i in range(3)]
    plan += [(tmp_path / "fresh3", ("bytes", size)), (tmp_path / "fresh4", ("seconds", rng.uniform(0, 0.3)))]
    # repeatedly into one store, each time further on: a resumed put hashes the file first
    # (its first chunk is there), then stores what is missing
    plan += [(tmp_path / "resumed", ("bytes", at)) for at in sorted(rng.uniform(0, size) for _ in range(3))]
    plan += [(tmp_path / "resumed", ("bytes", size)), (tmp_path / "resumed", ("seconds", rng.uniform(0, 0.3)))]
    killed = 0
    for i, (store, moment) in enumerate(plan):
        killed += _kill_at(store, src, moment)
        check_consistent(store, f"after kill {i} at {moment} (seed {SEED})")
    assert killed >= len(plan) // 2, "most writers finished before the kill: the kills did not test anything"

    for store in (tmp_path / "fresh0", tmp_path / "resumed"):
        digest = _store_to_completion(store, src)
        assert digest == expected
        check_consistent(store, "after storing again")
        objects = open_store(store)
        assert objects.get_bytes(digest) == src.read_bytes()
        objects.get_file(digest, tmp_path / "back.bin")
        assert blake3((tmp_path / "back.bin").read_bytes()).hexdigest() == expected
