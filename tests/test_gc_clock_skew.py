"""gc's grace protocol holds when a writer's clock is behind the store's.

gc marks what is unreferenced at ``T`` (the store's clock: the mtime of a probe file it
writes), and a later gc deletes a marked object only if nothing touched it since. A
writer that reuses a stored object touches it. On a local disk (also one that several
machines mount, or a machine whose clock NTP set back) the touch must give the object a
time of the file system's clock, which gc reads, not of the writer's: a writer whose
clock is two days behind used to set an mtime before the mark, and gc then deleted the
object under a file that writer was storing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from casstore.maintenance.gc import collect_garbage
from casstore.objects import open_store
from casstore.runs import RunStore

DAYS = 2 * 86400 * 10**9


@pytest.mark.parametrize("behind", [True, False], ids=["writer-clock-behind", "same-clock"])
def test_an_object_reused_after_the_mark_by_a_writer_with_a_slow_clock_is_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, behind: bool) -> None:
    store = RunStore(open_store(str(tmp_path / "store"), create=True))
    data = os.urandom(3 << 20)
    first = store.objects.put_bytes(data)  # stored, referenced by nothing: garbage
    store.objects.flush()
    time.sleep(1.2)  # older than gc's slack of one second when it is marked
    marked = collect_garbage(store.backend, grace=0)
    assert marked.marked_total > 0 and marked.deleted_total == 0
    time.sleep(1.2)  # past gc's slack of one second
    real = time.time_ns
    if behind:  # this writer's clock is two days behind the store's
        monkeypatch.setattr(time, "time_ns", lambda: real() - DAYS)
    again = store.objects.put_bytes(data)  # reuses every object: touches them
    monkeypatch.setattr(time, "time_ns", real)
    assert again.digest == first.digest
    swept = collect_garbage(store.backend, grace=0)  # the writer has not bound the file yet
    assert swept.deleted_total == 0, swept.deleted
    assert swept.kept_fresh > 0
    assert store.objects.get_bytes(first.digest) == data
