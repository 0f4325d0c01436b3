"""Four paths of casstore's client beside the plain way each replaces, taking turns in one process.

    python benchmarks/bench_local_paths.py            # 100 barriers, 1 GiB verified, 256 MiB re-logged, 5 rounds
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

Each path is kept only while it is faster than its plain twin here; the ratios say so.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import casstore.backend.local as local  # noqa: E402
import casstore.objects.passes as passes  # noqa: E402
from casstore.backend.base import Backend  # noqa: E402
from casstore.backend.local import LocalBackend  # noqa: E402
from casstore.maintenance.verify import verify_store  # noqa: E402
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="10 barriers, 64 MiB verified, 32 MiB re-logged, 2 rounds")
    ap.add_argument("--rounds", type=int, default=None)
    a = ap.parse_args()
    n, size, relog_mib, rounds = (10, 64, 32, 2) if a.quick else (100, 1024, 256, 5)
    rounds = a.rounds or rounds
    with tempfile.TemporaryDirectory(prefix="bench-local-paths-") as tmp:
        work = Path(tmp)
        times: dict[str, list[float]] = {k: [] for k in ("together", "one by one", "mapped", "read", "beside", "inline", "iso", "botocore")}
        src = work / "model.bin"
        src.write_bytes(os.urandom(relog_mib * MIB))
        filled = work / "filled"
        objects = open_run_store(str(filled)).objects
        for _ in range(size // 16):
            objects.put_bytes(os.urandom(16 * MIB))
        objects.flush()
        for r in range(rounds):  # taking turns: each goes first in every other round
            order = [("together", 8), ("one by one", 1)]
            for name, threads in order if r % 2 == 0 else order[::-1]:
                times[name].append(barriers(work / f"b-{r}-{threads}", n, threads))
            for name, on in [("mapped", True), ("read", False)] if r % 2 == 0 else [("read", False), ("mapped", True)]:
                times[name].append(verify(filled, on))
            for name, on in [("beside", True), ("inline", False)] if r % 2 == 0 else [("inline", False), ("beside", True)]:
                times[name].append(relog(work / f"r-{r}-{name}", src, on))
            for name, on in [("iso", True), ("botocore", False)] if r % 2 == 0 else [("botocore", False), ("iso", True)]:
                times[name].append(statistics.median(parse_listing(on) for _ in range(5)))
        local._FSYNC_THREADS = 8
        med = {k: statistics.median(v) for k, v in times.items()}
        load = os.getloadavg()[0]
        print(f"bench_local_paths: medians of {rounds} rounds, load {load:.1f}")
        print(f"1. put of 3 MiB + barrier (median of {n} each round)")
        print(f"   fsync calls together        {med['together'] * 1000:8.2f} ms")
        print(f"   fsync calls one by one      {med['one by one'] * 1000:8.2f} ms")
        gain = med["one by one"] / med["together"]
        print(f"   together is {gain:.2f}x faster (kept only while > 1x: {'met' if gain > 1 else 'MISSED'})")
        print(f"2. verify_store of a store of {size} MiB of chunks")
        print(f"   hashed through memory maps  {med['mapped']:8.3f} s")
        print(f"   hashed from bytes read      {med['read']:8.3f} s")
        gain = med["read"] / med["mapped"]
        print(f"   maps are {gain:.2f}x faster (kept only while > 1x: {'met' if gain > 1 else 'MISSED'})")
        print(f"3. re-log of a {relog_mib} MiB file with 1 MiB changed (put_file + barrier)")
        print(f"   new chunks written beside   {med['beside']:8.3f} s")
        print(f"   new chunks written inline   {med['inline']:8.3f} s")
        gain = med["inline"] / med["beside"]
        print(f"   beside is {gain:.2f}x faster (kept only while > 1x: {'met' if gain > 1 else 'MISSED'})")
        print("4. parsing an S3 listing page of 1,000 keys (median of 5 each round)")
        print(f"   fromisoformat timestamps    {med['iso'] * 1000:8.2f} ms")
        print(f"   botocore's parser           {med['botocore'] * 1000:8.2f} ms")
        gain = med["botocore"] / med["iso"]
        print(f"   fromisoformat is {gain:.2f}x faster (kept only while > 1x: {'met' if gain > 1 else 'MISSED'})")


if __name__ == "__main__":
    main()
