"""A process logging while another collects garbage loses nothing.

The writer keeps logging versions of a few contents (so it deduplicates, at file and at
chunk level, against data that deleted runs left behind and that gc has marked) and
deletes half of its runs; the collector runs gc in a loop with a short grace period.
Afterwards every run that was not deleted must read back whole and verified.

gc is safe beside writers under one assumption (docs/design.md, "Garbage collection"): a
writer publishes a record at most ``grace`` after it wrote or touched the objects the
record references. The writer measures each logging call (an upper bound of that time);
a loss in a run whose call took longer than the grace period is reported as that
assumption broken (the machine stalled the writer), not as a loss. GRACE is long enough
for a loaded machine (a logging call's durability barrier was measured at up to 0.9 s at
load 12 on 2 cores) and the writer reuses content of runs deleted about GRACE ago, so the
reuse still meets objects that gc is sweeping.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import time
from pathlib import Path
from typing import Any

import pytest

from casstore.maintenance.gc import collect_garbage
from casstore.maintenance.verify import verify_store
from casstore.objects import ChunkerParams, open_store
from casstore.runs import RunStore

SMALL = ChunkerParams(min_size=1024, avg_size=4096, max_size=16384)
#: gc's grace period here: what the writer must keep between writing and publishing
GRACE = 1.5


def _store(url: str, layout: str | None = None) -> RunStore:
    return RunStore(open_store(url, chunker=SMALL, layout=layout))


def writer(url: str, seed: int, seconds: float, results: Any) -> None:
    """For ``seconds``: each run logs a new content and an older one (or an edit of it) that
    runs deleted about a grace period ago left behind, so it is garbage that gc has marked
    and is about to sweep or sweeping. About a third of the runs are kept; the others are
    deleted at once. Each run reports its slowest logging call (seconds)."""
    try:
        rng = random.Random(seed)
        store = _store(url)
        exp = store.get_or_create_experiment("race")
        bases: list[tuple[float, bytes]] = []
        logged: list[tuple[str, bool, dict[str, str], float]] = []
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            now = time.monotonic()
            bases.append((now, rng.randbytes(24_000)))
            near = [b for t, b in bases if 0.6 * GRACE <= now - t <= 1.6 * GRACE]
            old = rng.choice(near or [b for _, b in bases[-14:-3]] or [bases[-1][1]])
            if rng.random() < 0.5:  # an edit: shares most chunks with the garbage version
                at = rng.randrange(len(old))
                old = old[:at] + rng.randbytes(8) + old[at:]
            h = store.create_run(exp)
            files, slowest = {}, 0.0
            for path, data in (("new.bin", bases[-1][1]), ("old.bin", old)):
                began = time.monotonic()  # before any object is written or touched
                files[path] = h.log_bytes(path, data).digest
                slowest = max(slowest, time.monotonic() - began)  # its record is published
            h.end()
            keep = rng.random() < 0.35
            if not keep:
                store.delete_run(h.run_id, "race test")
            logged.append((h.run_id, not keep, files, slowest))
            time.sleep(rng.random() * 0.06)
        results.put(("writer", logged, None))
    except BaseException as e:  # reported to the parent, which fails the test with it
        results.put(("writer", [], f"{type(e).__name__}: {e}"))


def collector(url: str, seconds: float, results: Any) -> None:
    """Collect garbage in a loop with a short grace period for ``seconds``."""
    try:
        store = _store(url)
        deleted = kept = passes = packs_deleted = repacked = folded = 0
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            r = collect_garbage(store.backend, grace=GRACE, slack=0.0)
            deleted += r.deleted_total
            kept += r.kept_fresh + r.packs_kept_fresh
            packs_deleted += r.packs_deleted
            repacked += r.repacked
            folded += r.indexes_folded
            passes += 1
        results.put(("gc", {"deleted": deleted, "kept": kept, "passes": passes, "packs_deleted": packs_deleted,
                            "repacked": repacked, "folded": folded}, None))
    except BaseException as e:
        results.put(("gc", {}, f"{type(e).__name__}: {e}"))


@pytest.mark.parametrize("layout", ["loose", "packs"])
@pytest.mark.parametrize("round_", [1, 2])
def test_a_writer_racing_gc_loses_nothing(tmp_path: Path, round_: int, layout: str) -> None:
    """In a store of the packs layout the writer deduplicates against chunks in packs that
    gc marks, repacks and deletes meanwhile."""
    url = str(tmp_path / "store")
    _store(url, layout)  # create the store with the small chunker before the racers open it
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    seconds = 3 * GRACE
    procs = [
        ctx.Process(target=writer, args=(url, round_, seconds, results)),
        ctx.Process(target=collector, args=(url, seconds + 1.0, results)),
    ]
    for p in procs:
        p.start()
    got = {}
    for _ in procs:
        who, value, err = results.get(timeout=120)
        assert err is None, f"{who} failed: {err}"
        got[who] = value
    for p in procs:
        p.join(timeout=60)

    store = _store(url)
    logged = got["writer"]
    live = [run_id for run_id, deleted, _, _ in logged if not deleted]
    assert live and len(live) < len(logged)
    assert got["gc"]["deleted"] > 0, "gc deleted nothing: the race was not exercised"
    if layout == "packs":
        assert got["gc"]["packs_deleted"] > 0, got["gc"]
        assert got["gc"]["folded"] > 0, got["gc"]  # index objects folded while the writer published new ones
    lost: list[str] = []
    for run_id, deleted, files, slowest in logged:
        if deleted:
            continue
        try:
            view = store.get_run(run_id)
            assert {p: a.digest for p, a in view.artifacts.items()} == files
            for digest in files.values():
                store.objects.verify_file(digest)
        except Exception as e:
            if slowest <= GRACE:
                raise  # the writer kept the protocol's assumption: this is a loss
            lost.append(f"run {run_id}: {type(e).__name__}: {e}")
    if lost:
        pytest.fail(
            f"assumption A broken, not a loss: the writer took longer than the grace period ({GRACE}s) between "
            f"writing objects and publishing the records of {len(lost)} run(s) (the machine stalled it), and gc "
            f"collected what those records reference: {lost[:3]}")
    report = verify_store(store, live)
    assert report.ok, [p.to_dict() for p in report.problems]
    # and once the writer is gone, gc converges on exactly what the live runs need
    for _ in range(2):
        collect_garbage(store.backend, grace=0, slack=0)
        time.sleep(0.02)
    final = verify_store(store)
    assert final.ok, [p.to_dict() for p in final.problems]
