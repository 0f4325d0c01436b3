"""A gc stopped in the middle of a delete hides nothing and loses nothing.

On a local store gc deletes an object by renaming it aside, reading its mtime, then
unlinking it, or linking it back when a writer reused it meanwhile. A gc stopped between
the rename and the decision (Ctrl-C, SIGKILL, a power loss) leaves the object aside. Ctrl-C
finishes the decision before gc exits; after a kill the next gc finishes it before it reads
the store, so an object a writer reused is back before anything could take it for missing
(a gc that found it missing would block and tell the user to restore it from a backup).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from casstore.objects import ChunkerParams, open_store
from casstore.runs import RunStore

SMALL = ChunkerParams(min_size=1024, avg_size=4096, max_size=16384)


def _cli(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "casstore.cli", "--store", str(store), *args],
                          capture_output=True, text=True, timeout=120)


def _aside(root: Path) -> list[Path]:
    return [p for p in root.rglob(".tmp-gcq-*")]


def test_an_object_a_killed_gc_left_aside_is_back_before_the_next_gc_reads_the_store(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = RunStore(open_store(str(root), chunker=SMALL, create=True))
    h = store.create_run(store.get_or_create_experiment("gc"))
    data = os.urandom(100_000)
    h.bind_artifact("weights.bin", *store.objects.put_bytes(data))
    h.end()
    chunk = sorted((root / "chunks").rglob("*"))[-1]
    assert chunk.is_file()
    # what a gc killed between its rename and its decision leaves, when a writer reused the
    # object after the mark (its mtime is after the stamp the name carries)
    stamp = int((chunk.stat().st_mtime - 60) * 1e9)
    chunk.rename(chunk.with_name(f".tmp-gcq-{stamp}-deadbeef-{chunk.name}"))
    r = _cli(root, "gc")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "UNPROVEN" not in r.stdout and chunk.is_file() and not _aside(root)
    r = _cli(root, "get", h.run_id, "weights.bin", "-o", str(tmp_path / "out.bin"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out.bin").read_bytes() == data


_INTERRUPTED_GC = textwrap.dedent("""
    import os, signal, sys
    from casstore.maintenance.gc import collect_garbage
    from casstore.objects import open_store

    state = {"renamed": None, "interrupted": False}

    def hook(event, args):
        if event == "os.rename" and ".tmp-gcq-" in str(args[1]) and state["renamed"] is None:
            state["renamed"] = str(args[0])
            os.utime(args[0])  # a writer reuses the object in the instant before the rename
        elif event in ("os.link", "os.remove") and state["renamed"] and not state["interrupted"]:
            state["interrupted"] = True
            print(state["renamed"], flush=True)
            signal.raise_signal(signal.SIGINT)  # Ctrl-C between the rename and the decision

    sys.addaudithook(hook)
    collect_garbage(open_store(sys.argv[1]).backend, grace=0)
""")


def test_ctrl_c_during_a_delete_leaves_a_reused_object_in_place(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = RunStore(open_store(str(root), chunker=SMALL, create=True))
    exp = store.get_or_create_experiment("gc")
    garbage = store.create_run(exp)
    garbage.bind_artifact("old.bin", *store.objects.put_bytes(os.urandom(60_000)))
    garbage.end()
    store.delete_run(garbage.run_id)
    past = time.time() - 3600
    for p in (root / "chunks").rglob("*"):
        os.utime(p, (past, past))
    for p in (root / "files").rglob("*"):
        os.utime(p, (past, past))
    r = _cli(root, "gc", "--grace", "0s")  # marks the deleted run's objects
    assert r.returncode == 0, r.stderr
    # Ctrl-C as at a terminal, even where this test was started with SIGINT ignored (a shell's background job)
    child = subprocess.run([sys.executable, "-c", _INTERRUPTED_GC, str(root)], capture_output=True, text=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                           timeout=120)
    assert "KeyboardInterrupt" in child.stderr, child.stderr
    reused = Path(child.stdout.strip())
    assert reused.is_file(), f"{reused.name} was reused while gc deleted it, and is gone"
    assert not _aside(root)
