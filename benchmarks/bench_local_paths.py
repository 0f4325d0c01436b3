"""Seven paths of casstore's client beside the plain way each replaces, taking turns in one process.

    python benchmarks/bench_local_paths.py            # 100 barriers, 1 GiB verified and stored fresh, 256 MiB re-logged and hashed, 5 rounds
    python benchmarks/bench_local_paths.py --quick    # small sizes: checks that it runs

1. **The durability barrier after a small put** (3 MiB, a few chunk files): the ``fsync``
   calls made together from up to 8 threads and all waited for, against the same calls made
   one after another (the barrier with one thread).
2. **``verify_store`` hashing a store's chunk files**: through read-only memory maps
   (``LocalBackend.mapped``), against reading each file into new bytes (the base
   ``Backend.mapped``).
3. **A re-log** (a file stored before, 1 MiB of it changed, stored again): the new chunks
   written by a thread of their own while the chunks after them are checked, against
   writing each where it is found (the writer thread replaced by an inline one).
4. **Parsing an S3 listing page** of 1,000 keys (the XML a ``ListObjectsV2`` answers):
   ``LastModified`` read with ``datetime.fromisoformat`` (``casstore.backend.s3.parse_timestamp``,
   installed through botocore's ``set_parser_defaults``), against botocore's own parser.
5. **A new file into a new local store** (``put_file`` + barrier), its chunks written with
   ``O_DIRECT`` as casstore writes them (the last part block of each chunk written through
   the page cache), against each chunk written padded to a whole block and its file
   truncated. The process's CPU time decides (what a put takes
   from other work on the machine, and what holds the put back when the cores are
   shared); wall time is printed beside it.
6. **Cutting a file in windows** of 16 MiB (``Chunker.cut_block``, as the storing passes
   do): cutting stopped a maximum chunk before each window's end, against cutting on to
   the end and cutting the last chunk, cut short there, again in the next window. CPU
   time of the cutting thread.
7. **Hashing a cached file whole under a read lease** (``hash_leased``, as a put of a file
   whose first chunk is stored does), 256 MiB: in windows of 4 MiB, then 64 MiB, against
   windows of 4, then 16 MiB; beside both, one BLAKE3 pass over a single map of the whole
   file with every core (``b3sum``'s way, the floor).

Each path is kept only while it is faster than its plain twin here; the ratios say so.
"""

from __future__ import annotations

import argparse
import functools
import mmap
import os
import resource
import statistics
import sys
import tempfile
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import discard  # noqa: E402

import casstore.backend.local as local  # noqa: E402
import casstore.objects.passes as passes  # noqa: E402
from casstore.backend.base import Backend  # noqa: E402
from casstore.backend.local import LocalBackend  # noqa: E402
from casstore.maintenance.verify import verify_store  # noqa: E402
from casstore.objects.digest import new_hasher  # noqa: E402
from casstore.objects.mapped import FileLease, hash_leased  # noqa: E402
from casstore.objects.chunking import Chunker  # noqa: E402
from casstore.runs import open_run_store  # noqa: E402

MIB = 1 << 20


def barriers(root: Path, n: int, threads: int) -> float:
    """Median seconds of ``n`` puts of 3 MiB each followed by the barrier, with ``threads``."""
    local._FSYNC_THREADS = threads
    store = open_run_store(str(root)).objects
    times = []
    for _ in range(n):
        data = os.urandom(3 * MIB)
        t = time.perf_counter()
        store.put_bytes(data)
        store.flush()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def verify(root: Path, mapped: bool) -> float:
    LocalBackend.mapped = MAPPED if mapped else Backend.mapped  # type: ignore[method-assign]
    try:
        t = time.perf_counter()
        report = verify_store(open_run_store(str(root)))
        took = time.perf_counter() - t
    finally:
        LocalBackend.mapped = MAPPED  # type: ignore[method-assign]
    if not report.ok:
        raise SystemExit(f"verify found problems in a sound store: {report}")
    return took


MAPPED = LocalBackend.mapped
DIRECT = LocalBackend._write_tmp_direct


def _padded_then_truncated(self: LocalBackend, final: str, data: bytes | memoryview) -> str:
    """The plain way: the whole object written directly, padded with zeros to a whole block,
    then the file truncated to its length."""
    n = len(data)
    padded = -(-n // 4096) * 4096
    view = memoryview(self._aligned.get(padded))
    view[:n] = data
    view[n:padded] = bytes(padded - n)
    tmp, fd = self._create_tmp(final, os.O_DIRECT)
    done = 0
    try:
        while done < padded:
            done += os.write(fd, view[done:padded])
        os.ftruncate(fd, n)
    finally:
        os.close(fd)
    return tmp


def _cut_to_the_end(self: Chunker, block: memoryview, final: bool) -> tuple[list[memoryview], int]:
    """The plain way: every chunk of the block cut, the last one held back if it reaches
    the block's end (it is cut again at the start of the next block)."""
    chunks: list[memoryview] = []
    for ch in self._cdc.cut_buf(block):
        if not final and ch.offset + len(ch.data) >= len(block):
            return chunks, ch.offset
        chunks.append(ch.data)
    return chunks, len(block)


def cut_windows(data: memoryview, stop_early: bool) -> float:
    """CPU seconds of this thread to cut ``data`` in windows of 16 MiB."""
    chunker = Chunker()
    cut = chunker.cut_block if stop_early else functools.partial(_cut_to_the_end, chunker)
    pos, t = 0, time.thread_time()
    while pos < len(data):
        end = min(pos + (16 << 20), len(data))
        pos += cut(data[pos:end], end == len(data))[1]
    return time.thread_time() - t


def fresh(root: Path, src: Path, way: str) -> tuple[float, float]:
    """Wall and CPU seconds to store ``src``, cached and not yet stored, into a new store,
    ``way`` being "now" (as casstore does) or "truncated" (the plain way)."""
    os.sync()  # nobody pays for another's write-back
    with src.open("rb", buffering=0) as f:  # in the page cache, read through a small buffer
        while f.read(16 * MIB):
            pass
    LocalBackend._write_tmp_direct = _padded_then_truncated if way == "truncated" else DIRECT  # type: ignore[method-assign]
    try:
        store = open_run_store(str(root)).objects
        r0, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        store.put_file(str(src))
        store.flush()
        took, r1 = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF)
    finally:
        LocalBackend._write_tmp_direct = DIRECT  # type: ignore[method-assign]
    discard(root)
    return took, r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime


POOL = passes.ThreadPoolExecutor


class _Inline:
    """An executor that runs each call where it is submitted."""

    def submit(self, fn: Any, *args: Any) -> Future[Any]:
        f: Future[Any] = Future()
        try:
            f.set_result(fn(*args))
        except BaseException as e:
            f.set_exception(e)
        return f

    def shutdown(self, wait: bool = True) -> None:
        pass


def relog(root: Path, src: Path, beside: bool) -> float:
    """Seconds to store ``src`` again with 1 MiB of it changed, into a store holding it."""
    store = open_run_store(str(root)).objects
    data = bytearray(src.read_bytes())
    src.write_bytes(data)
    store.put_file(str(src))
    store.flush()
    mid = len(data) // 2
    data[mid : mid + MIB] = os.urandom(MIB)
    src.write_bytes(data)
    passes.ThreadPoolExecutor = (  # type: ignore[misc]
        POOL if beside else lambda n, thread_name_prefix="": _Inline() if thread_name_prefix == "casstore-write"
        else POOL(n, thread_name_prefix=thread_name_prefix))
    try:
        t = time.perf_counter()
        store.put_file(str(src))
        store.flush()
        return time.perf_counter() - t
    finally:
        passes.ThreadPoolExecutor = POOL  # type: ignore[misc]


def hash_whole(src: Path, window: int) -> float:
    """Seconds to hash ``src`` under a read lease in windows of ``window`` bytes after the
    first 4 MiB, or (``window`` 0) through one map of the whole file, as ``b3sum`` does."""
    from blake3 import blake3

    t = time.perf_counter()
    if not window:
        h = blake3(max_threads=blake3.AUTO)
        h.update_mmap(src)
    else:
        with src.open("rb") as f, FileLease(f.fileno()) as lease:
            h = new_hasher()
            if hash_leased(lease, h, window=window) != src.stat().st_size:
                raise SystemExit("no read lease on the benchmark's file: nothing to compare")
    h.hexdigest()
    return time.perf_counter() - t


def parse_listing(fast: bool) -> float:
    """Seconds to parse a listing page of 1,000 keys with botocore's XML parser."""
    import botocore.parsers
    import botocore.session
    from botocore.utils import parse_timestamp as botocore_timestamp

    from casstore.backend.s3 import parse_timestamp

    shape = botocore.session.get_session().get_service_model("s3").operation_model("ListObjectsV2").output_shape
    keys = "".join(f"<Contents><Key>experiments/e/runs/{i:032x}</Key><LastModified>2026-12-06T10:{i % 60:02d}:"
                   f"00.000Z</LastModified><ETag>&quot;x&quot;</ETag><Size>10</Size></Contents>" for i in range(1000))
    body = ('<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Name>b</Name><KeyCount>1000</KeyCount><IsTruncated>false</IsTruncated>{keys}</ListBucketResult>").encode()
    parser = botocore.parsers.RestXMLParser(timestamp_parser=parse_timestamp if fast else botocore_timestamp)
    t = time.perf_counter()
    page = parser.parse({"body": body, "headers": {}, "status_code": 200}, shape)
    took = time.perf_counter() - t
    if len(page["Contents"]) != 1000 or page["Contents"][0]["LastModified"].isoformat() != "2026-12-06T10:00:00+00:00":
        raise SystemExit("the listing page did not parse to what it holds")
    return took


PARTS = ("barrier", "verify", "relog", "listing", "fresh", "cut", "hash")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="10 barriers, 64 MiB verified and stored fresh, 32 MiB re-logged, 2 rounds")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts to run, of {','.join(PARTS)}")
    a = ap.parse_args()
    n, size, relog_mib, rounds = (10, 64, 32, 2) if a.quick else (100, 1024, 256, 5)
    rounds = a.rounds or rounds
    only = set(a.only.split(","))
    if only - set(PARTS):
        raise SystemExit(f"--only: unknown parts {sorted(only - set(PARTS))}; choose among {','.join(PARTS)}")
    with tempfile.TemporaryDirectory(prefix="bench-local-paths-") as tmp:
        work = Path(tmp)
        times: dict[str, list[Any]] = {}

        def turns(r: int, pairs: list[tuple[str, Any]], run: Any) -> None:
            """Run both of a pair, taking turns: each goes first in every other round."""
            for name, arg in pairs if r % 2 == 0 else pairs[::-1]:
                times.setdefault(name, []).append(run(name, arg))

        src, filled, new = work / "model.bin", work / "filled", work / "new.bin"
        if "relog" in only or "hash" in only:
            src.write_bytes(os.urandom(relog_mib * MIB))
        if "verify" in only:
            objects = open_run_store(str(filled)).objects
            for _ in range(size // 16):
                objects.put_bytes(os.urandom(16 * MIB))
            objects.flush()
        if "fresh" in only or "cut" in only:
            new.write_bytes(os.urandom(size * MIB))
        for r in range(rounds):
            if "barrier" in only:
                turns(r, [("together", 8), ("one by one", 1)], lambda name, threads: barriers(work / f"b-{r}-{threads}", n, threads))
            if "verify" in only:
                turns(r, [("mapped", True), ("read", False)], lambda name, on: verify(filled, on))
            if "relog" in only:
                turns(r, [("beside", True), ("inline", False)], lambda name, on: relog(work / f"r-{r}-{name}", src, on))
            if "listing" in only:
                turns(r, [("iso", True), ("botocore", False)], lambda name, on: statistics.median(parse_listing(on) for _ in range(5)))
            if "fresh" in only:
                turns(r, [("now", 0), ("truncated", 0)], lambda name, _: fresh(work / f"f-{r}-{name}", new, name))
            if "cut" in only:
                with new.open("rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as m, memoryview(m) as view:
                    turns(r, [("stop early", True), ("to the end", False)], lambda name, early: cut_windows(view, early))
            if "hash" in only:
                turns(r, [("64 MiB windows", 64 * MIB), ("16 MiB windows", 16 * MIB), ("one map", 0)],
                      lambda name, window: hash_whole(src, window))
        local._FSYNC_THREADS = 8
        med = {k: statistics.median(v) for k, v in times.items() if not isinstance(v[0], tuple)}
        for k in ("now", "truncated"):
            if k in times:
                med[k] = statistics.median(t for t, _ in times[k])
                med[f"{k} cpu"] = statistics.median(c for _, c in times[k])
        load = os.getloadavg()[0]
        print(f"bench_local_paths: medians of {rounds} rounds, load {load:.1f}")

        def verdict(what: str, gain: float) -> str:
            return f"   {what} is {gain:.2f}x faster (kept only while > 1x: {'met' if gain > 1 else 'MISSED'})"

        if "barrier" in only:
            print(f"1. put of 3 MiB + barrier (median of {n} each round)")
            print(f"   fsync calls together        {med['together'] * 1000:8.2f} ms")
            print(f"   fsync calls one by one      {med['one by one'] * 1000:8.2f} ms")
            print(verdict("together", med["one by one"] / med["together"]))
        if "verify" in only:
            print(f"2. verify_store of a store of {size} MiB of chunks")
            print(f"   hashed through memory maps  {med['mapped']:8.3f} s")
            print(f"   hashed from bytes read      {med['read']:8.3f} s")
            print(verdict("maps", med["read"] / med["mapped"]))
        if "relog" in only:
            print(f"3. re-log of a {relog_mib} MiB file with 1 MiB changed (put_file + barrier)")
            print(f"   new chunks written beside   {med['beside']:8.3f} s")
            print(f"   new chunks written inline   {med['inline']:8.3f} s")
            print(verdict("beside", med["inline"] / med["beside"]))
        if "listing" in only:
            print("4. parsing an S3 listing page of 1,000 keys (median of 5 each round)")
            print(f"   fromisoformat timestamps    {med['iso'] * 1000:8.2f} ms")
            print(f"   botocore's parser           {med['botocore'] * 1000:8.2f} ms")
            print(verdict("fromisoformat", med["botocore"] / med["iso"]))
        if "fresh" in only:
            print(f"5. a new {size} MiB file into a new store (put_file + barrier)")
            print(f"   as casstore writes chunks   {med['now']:8.3f} s   cpu {med['now cpu']:6.3f} s")
            print(f"   padded, then truncated      {med['truncated']:8.3f} s   cpu {med['truncated cpu']:6.3f} s")
            less = med["truncated cpu"] / med["now cpu"]
            print(f"   the last block through the page cache: {less:.2f}x less CPU, {med['truncated'] / med['now']:.2f}x "
                  f"faster (kept only while less CPU: {'met' if less > 1 else 'MISSED'})")
        if "cut" in only:
            print(f"6. cutting {size} MiB in windows of 16 MiB (CPU time)")
            print(f"   stopped before the end      {med['stop early']:8.3f} s")
            print(f"   cut to the end, then again  {med['to the end']:8.3f} s")
            print(verdict("stopping early", med["to the end"] / med["stop early"]))
        if "hash" in only:
            floor = med["one map"]
            print(f"7. hashing {relog_mib} MiB of a cached file whole under a read lease, against one map (b3sum's way)")
            for k in ("64 MiB windows", "16 MiB windows", "one map"):
                print(f"   {k:<27} {med[k] * 1000:8.2f} ms   {med[k] / floor:5.2f}x one map")
            print(verdict("64 MiB windows", med["16 MiB windows"] / med["64 MiB windows"]))

if __name__ == "__main__":
    main()
