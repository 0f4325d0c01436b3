"""The pack index at scale, by simulation: memory per entry, load time, and what that means
for a store of 10 TB and for gc over 10^8 chunks.

Builds synthetic index objects (random chunk digests, packs of 64 chunks of 256 KiB, 16 MiB
each; index objects of 256 packs), writes them to a local store, and times a reader
loading them all (:class:`casstore.objects.packs.PackIndex`: list, read, check each
index's BLAKE3 and ``b3`` field, merge), with and without the local cache of checked
indexes. Memory is the growth of the process's resident set while the merged index is
held. Then it extrapolates linearly, printing the figures for 10 TB (4 x 10^7 chunks of
256 KiB) and 10^8 chunks.

    python benchmarks/bench_packs_index.py            # 10^6 entries
    python benchmarks/bench_packs_index.py --quick    # 10^5 entries
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

import psutil  # noqa: E402

from casstore.objects import open_store  # noqa: E402
from casstore.objects.packs import INDEX_PREFIX, PACK_TARGET, PackIndex, encode_index  # noqa: E402
from casstore.objects.digest import hash_bytes  # noqa: E402

CHUNK = 256 << 10
PER_PACK = PACK_TARGET // CHUNK
PACKS_PER_INDEX = 256


def build(store_dir: str, entries: int) -> int:
    """Write synthetic index objects for ``entries`` chunks; return the index bytes written."""
    store = open_store(store_dir, layout="packs", stat_cache=False)
    written = 0
    packs = []
    for p in range(entries // PER_PACK):
        es = [(os.urandom(32).hex(), i * CHUNK, CHUNK) for i in range(PER_PACK)]
        packs.append((os.urandom(32).hex(), PER_PACK * CHUNK + 64, es))
        if len(packs) == PACKS_PER_INDEX or p == entries // PER_PACK - 1:
            data = encode_index(packs)
            store.backend.put_blob(INDEX_PREFIX + hash_bytes(data), data)
            written += len(data)
            packs = []
    return written


def load(store_dir: str) -> tuple[float, int, int]:
    store = open_store(store_dir, stat_cache=False)
    gc.collect()
    rss0 = psutil.Process().memory_info().rss
    t0 = time.perf_counter()
    index = PackIndex(store.backend, store.layout)
    index.load()
    seconds = time.perf_counter() - t0
    gc.collect()
    grown = psutil.Process().memory_info().rss - rss0
    n = len(index)
    del index
    return seconds, grown, n


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10^5 entries")
    parser.add_argument("--entries", type=int, default=None)
    args = parser.parse_args(argv)
    entries = args.entries or (100_000 if args.quick else 1_000_000)
    with tempfile.TemporaryDirectory(prefix="casstore-bench-index-") as tmp:
        os.environ["CASSTORE_CACHE_DIR"] = os.path.join(tmp, "cache")
        store_dir = os.path.join(tmp, "store")
        on_store = build(store_dir, entries)
        cold, grown, n = load(store_dir)  # fetches every index and caches it
        warm, _, _ = load(store_dir)  # from the local cache (each file's BLAKE3 checked)
    per_entry = grown / n
    print(f"synthetic index: {n:,} chunk entries in {n // PER_PACK:,} packs of {PER_PACK} chunks, "
          f"{on_store / n:.0f} bytes per entry in the store")
    print(f"load, reading the index objects:   {cold:7.2f} s ({cold / n * 1e6:.1f} us per entry)")
    print(f"load, from the local cache:        {warm:7.2f} s ({warm / n * 1e6:.1f} us per entry)")
    print(f"memory held by the merged index:   {grown / 2**20:7.0f} MiB ({per_entry:.0f} bytes per entry)")
    for label, count in (("10 TB of 256 KiB chunks", 10 * 10**12 // CHUNK), ("10^8 chunks", 10**8)):
        print(f"{label:26} {count:>12,} entries: index objects {count * on_store / n / 2**30:6.1f} GiB, "
              f"memory {count * per_entry / 2**30:6.1f} GiB, load from cache {count * warm / n:6.0f} s")


if __name__ == "__main__":
    main()
