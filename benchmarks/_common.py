"""Helpers shared by the benchmark scripts (run as scripts, so this directory is on sys.path)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def blake3_file(path: Path) -> str:
    """One BLAKE3 pass over a file on every core, as ``b3sum`` makes it: the floor of any
    store that names content by its digest."""
    from blake3 import blake3

    h = blake3(max_threads=blake3.AUTO)
    h.update_mmap(path)
    return h.hexdigest()


def dir_size(path: Path) -> int:
    """Bytes in the files under ``path`` (files that vanish while walking count as 0)."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(dirpath, f)).st_size
            except FileNotFoundError:
                pass
    return total


# ---- scratch space ----------------------------------------------------------------------------
#
# This machine's file system (ext4 without a journal) skips the inodes freed in the last
# minute or more when it allocates a new one, testing each on every create: after a
# benchmark deletes a store of thousands of chunk files, creating a file costs about
# 0.8 ms instead of 25 us for minutes. A benchmark that deleted one peer's output before
# timing the next would charge that to whoever creates the most files. So outputs are
# only emptied during a run (truncating frees the disk space, not the inode) and deleted
# once everything is measured: at the end of the script, or when run_all.py sets
# CASSTORE_BENCH_TRASH, at the end of the whole run.

TRASH_ENV = "CASSTORE_BENCH_TRASH"


def discard(path: Path) -> None:
    """Free the space of a benchmark output without freeing its inodes (see above)."""
    if path.is_dir():
        for dirpath, _, files in os.walk(path):
            for f in files:
                os.truncate(os.path.join(dirpath, f), 0)
    elif path.exists():
        os.truncate(path, 0)


@contextlib.contextmanager
def scratch(prefix: str, parent: str | Path | None = None) -> Iterator[Path]:
    """A new working directory, deleted when the run is over (see above).

    ``parent`` (a script's ``--dir``) is created when it does not exist yet. Unless
    ``CASSTORE_CACHE_DIR`` is set, casstore's stat cache goes there too for the run (and
    the processes it starts), not into the user's cache.
    """
    if parent is not None:
        Path(parent).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.environ.setdefault("CASSTORE_CACHE_DIR", str(work / "cache"))
    try:
        yield work
    finally:
        trash = os.environ.get(TRASH_ENV)
        try:
            if not (trash and Path(trash).is_dir()):
                raise FileNotFoundError(trash)
            discard(work)
            os.rename(work, Path(trash) / work.name)
        except OSError:  # not run by run_all.py, or its trash is on another file system
            shutil.rmtree(work, ignore_errors=True)
