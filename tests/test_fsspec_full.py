"""A generic fsspec file system (sftp, smb, hdfs ...) that runs out of space mid-write.

Such file systems write an object in place, so a write that fails halfway (ENOSPC) leaves
the first half under the object's final name. A half-written record or pack index is then
damage that stays: it fails its check forever, `verify --all` names it, and `gc` blocks on a
damaged record of a live run, just when space is needed. casstore removes what a failed
write of its own left (the object was not there before it wrote), says the store is full
(`StoreFullError`), and the next log, with space again, stores everything whole.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest
from fsspec.implementations.local import LocalFileSystem

from casstore.backend.fsspec import FsspecBackend
from casstore.exceptions import StoreFullError
from casstore.maintenance.gc import collect_garbage
from casstore.maintenance.verify import verify_store
from casstore.objects import open_objects
from casstore.runs import RunStore


class FillingUp(LocalFileSystem):  # type: ignore[misc]
    """A local file system whose writes of objects under ``fail_under`` write half their bytes
    and then fail with ENOSPC, as a full disk does."""

    fail_under: str | None = None

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        if self.fail_under is not None and f"/{self.fail_under}" in path and len(value) > 100:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(value[: len(value) // 2])
            raise OSError(errno.ENOSPC, "No space left on device", path)
        super().pipe_file(path, value, mode=mode, **kwargs)


@pytest.mark.parametrize("where", ["packs/", "files/", "chunk-index/", "runs/"])
def test_a_write_that_fills_the_disk_leaves_nothing_half_written(tmp_path: Path, where: str) -> None:
    fs = FillingUp()
    root = tmp_path / "store"
    root.mkdir()
    store = RunStore(open_objects(FsspecBackend(fs, str(root), url=f"sftp-like://{root}"), create=True))
    exp = store.get_or_create_experiment("full")
    data = os.urandom(3 << 20)
    h = store.create_run(exp)
    fs.fail_under = where if where != "runs/" else f"runs/{h.run_id}/batch-"
    with pytest.raises(StoreFullError, match="is full"):
        h.log_bytes("big.bin", data)
    fs.fail_under = None
    report = verify_store(store)
    assert report.ok, report.problems  # nothing half-written stays behind to fail its check
    again = store.create_run(exp)
    again.log_bytes("big.bin", data)
    again.end()
    assert store.artifact_bytes(again.run_id, store.get_run(again.run_id).artifacts["big.bin"]) == data
    assert collect_garbage(store.backend).ok  # gc is not blocked by a damaged record
    assert verify_store(store).ok
