"""The pack index at scale, by simulation: bytes per entry, memory and start-up of readers
and writers, for a store of 10 TB, and gc's requests and time for 10^8 chunks.

1. **Through the store** (``--entries``, default 10^6; ``--quick`` 10^5): synthetic index
   objects (random chunk digests, packs of 128 chunks of 256 KiB, index objects of 256
   packs) in a local store. Each step runs in a fresh process
   (:class:`casstore.objects.packs.PackIndex`), printing its time and the growth of its
   anonymous and file-backed resident memory (``RssAnon``, ``RssFile``):

   - first open on a machine: list, read and check every index object, merge, save the
     cache files;
   - reader start-up, cache warm: list ``chunk-index/``, map the cache files, check their
     BLAKE3; then 100,000 lookups (half of digests held, half not);
   - writer start-up: the same, and a listing of ``packs/`` (packs no index lists);
   - one new index object published by another writer: merged into the small segment.

2. **At the issue's scale** (``--scale-entries``, default 3.8 x 10^7: 10 TB of 256 KiB
   chunks; ``--quick`` 10^6): a cache file of that many entries written directly, then, in
   a fresh process, its start-up (map and check), 100,000 lookups, and what gc does with
   the arrays (grouping the chunks by pack). The figures for 10^8 chunks are extrapolated
   linearly from it, with gc's requests counted on paper.

Memory is what the process holds: a mapped cache file's pages are the kernel's page
cache (``RssFile``), dropped under pressure and shared by the processes of one machine.

    python benchmarks/bench_packs_index.py            # 10^6 entries, 10 TB synthetic cache
    python benchmarks/bench_packs_index.py --quick    # 10^5 entries, 10^6 synthetic
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

import numpy as np  # noqa: E402

from casstore.objects import open_store  # noqa: E402
from casstore.objects.chunkindex import ENTRY_BYTES, PACK_BYTES, Segment, open_segment, rows_of_packs, save_segment  # noqa: E402
from casstore.objects.digest import hash_bytes  # noqa: E402
from casstore.objects.packs import INDEX_PREFIX, PackIndex, encode_index  # noqa: E402

CHUNK = 256 << 10
PER_PACK = 128
PACKS_PER_INDEX = 256
LOOKUPS = 100_000
TEN_TB = 10 * 10**12 // CHUNK
GIB = 1 << 30


def rss() -> dict[str, int]:
    """This process's resident memory: anonymous and file-backed, in bytes."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("RssAnon:", "RssFile:")):
                name, value, _ = line.split()
                out[name[:-1]] = int(value) * 1024
    return out


def grown(before: dict[str, int]) -> dict[str, int]:
    now = rss()
    return {k: now[k] - before[k] for k in now}


def synthetic_packs(rng: random.Random, n_packs: int) -> list[tuple[str, int, list[tuple[str, int, int]]]]:
    return [(rng.randbytes(32).hex(), PER_PACK * CHUNK + 64,
             [(rng.randbytes(32).hex(), i * CHUNK, CHUNK) for i in range(PER_PACK)]) for _ in range(n_packs)]


def build(store_dir: str, entries: int) -> tuple[int, list[str]]:
    """Write synthetic index objects for ``entries`` chunks; return the index bytes written
    and a sample of the chunk digests."""
    store = open_store(store_dir, layout="packs", stat_cache=False)
    rng = random.Random(1)
    written, sample = 0, []
    left = entries // PER_PACK
    while left:
        packs = synthetic_packs(rng, min(PACKS_PER_INDEX, left))
        left -= len(packs)
        sample += [es[rng.randrange(PER_PACK)][0] for _, _, es in packs]
        data = encode_index(packs)
        store.backend.put_blob(INDEX_PREFIX + hash_bytes(data), data)
        written += len(data)
    return written, sample


def child(mode: str, arg: str) -> dict[str, Any]:
    """One measurement in this (fresh) process."""
    before = rss()
    if mode == "segment":  # the 10 TB cache file, mapped and checked, then looked up
        t0 = time.perf_counter()
        seg = open_segment(arg)
        opened = time.perf_counter() - t0
        mem_open = grown(before)
        keys = seg.key[np.random.default_rng(2).integers(0, len(seg), LOOKUPS // 2)]
        present = [int(k).to_bytes(8, "big") + seg.rest[i].tobytes()
                   for k, i in zip(keys.tolist(), np.searchsorted(seg.key, keys).tolist())]
        absent = [os.urandom(32) for _ in range(LOOKUPS // 2)]
        t0 = time.perf_counter()
        found = sum(seg.find(raw) is not None for raw in present + absent)
        looked = time.perf_counter() - t0
        mem_lookups = grown(before)
        t0 = time.perf_counter()
        order, starts = rows_of_packs(seg)
        live = np.zeros(len(seg), dtype=bool)
        live[::3] = True  # a live set: what gc counts per pack
        per_pack = np.add.reduceat((seg.length * live[order]).astype(np.uint64), starts[:-1])
        grouped = time.perf_counter() - t0
        return {"open": opened, "mem_open": mem_open, "lookup_us": looked / LOOKUPS * 1e6, "found": found,
                "mem_lookups": mem_lookups, "gc_group": grouped, "packs": int(per_pack.shape[0]), "entries": len(seg),
                "file": os.path.getsize(arg)}
    store = open_store(arg, stat_cache=False)
    index = PackIndex(store.backend, store.layout)
    t0 = time.perf_counter()
    index.load_indexes()
    reader = time.perf_counter() - t0
    out: dict[str, Any] = {"reader": reader, "mem": grown(before), "entries": len(index)}
    if mode == "warm":
        sample = json.loads(Path(arg, "sample.json").read_text())
        digests = [random.Random(3).choice(sample) for _ in range(LOOKUPS // 2)] + [os.urandom(32).hex() for _ in range(LOOKUPS // 2)]
        t0 = time.perf_counter()
        found = sum(index.get(d) is not None for d in digests)
        out["lookup_us"] = (time.perf_counter() - t0) / LOOKUPS * 1e6
        out["found"] = found
        out["mem_lookups"] = grown(before)
        t0 = time.perf_counter()
        index.describe_unindexed()
        out["writer"] = reader + time.perf_counter() - t0
    return out


def in_child(mode: str, arg: str) -> dict[str, Any]:
    res = subprocess.run([sys.executable, __file__, "--child", mode, arg], check=True, capture_output=True, text=True,
                         env=os.environ)
    return json.loads(res.stdout.strip().splitlines()[-1])


def write_scale_segment(path: str, entries: int) -> None:
    """A cache file of ``entries`` random chunk entries in packs of ``PER_PACK``."""
    rng = np.random.default_rng(1)
    packs = -(-entries // PER_PACK)
    key = np.sort(rng.integers(0, 2**63, entries, dtype=np.uint64) * 2)
    pack = rng.integers(0, packs, entries, dtype=np.uint32)
    seg = Segment(
        key=key, rest=rng.integers(0, 256, (entries, 24), dtype=np.uint8), pack=pack,
        offset=rng.integers(0, 32 << 20, entries, dtype=np.uint64), length=np.full(entries, CHUNK, dtype=np.uint32),
        pack_digest=rng.integers(0, 256, (packs, 32), dtype=np.uint8),
        pack_size=np.full(packs, PER_PACK * CHUNK, dtype=np.uint64),
        pack_index=(np.arange(packs, dtype=np.uint32) // PACKS_PER_INDEX),
        index_digest=rng.integers(0, 256, (-(-packs // PACKS_PER_INDEX), 32), dtype=np.uint8),
    )
    save_segment(seg, path)


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10^5 entries through the store, 10^6 at scale")
    parser.add_argument("--entries", type=int, default=None)
    parser.add_argument("--scale-entries", type=int, default=None)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    entries = args.entries or (100_000 if args.quick else 1_000_000)
    scale = args.scale_entries or (1_000_000 if args.quick else TEN_TB)
    with tempfile.TemporaryDirectory(prefix="casstore-bench-index-") as tmp:
        os.environ["CASSTORE_CACHE_DIR"] = os.path.join(tmp, "cache")
        store_dir = os.path.join(tmp, "store")
        on_store, sample = build(store_dir, entries)
        Path(store_dir, "sample.json").write_text(json.dumps(sample))
        cold = in_child("cold", store_dir)
        warm = in_child("warm", store_dir)
        store = open_store(store_dir, stat_cache=False)
        more = encode_index(synthetic_packs(random.Random(9), PACKS_PER_INDEX))
        store.backend.put_blob(INDEX_PREFIX + hash_bytes(more), more)
        newer = in_child("cold", store_dir)
        seg_path = os.path.join(tmp, "segment")
        t0 = time.perf_counter()
        write_scale_segment(seg_path, scale)
        written = time.perf_counter() - t0
        at_scale = in_child("segment", seg_path)
    n = warm["entries"]
    print(f"1. through the store: {n:,} chunk entries in {n // PER_PACK:,} packs of {PER_PACK} chunks, "
          f"index objects {on_store / n:.0f} bytes per entry in the store; held {ENTRY_BYTES} bytes per entry "
          f"and {PACK_BYTES} per pack in the cache files")
    print(f"   first open on a machine (fetch, check, merge, save): {cold['reader']:6.2f} s "
          f"({cold['reader'] / n * 1e6:.1f} us per entry)")
    print(f"   reader start-up, cache warm:                          {warm['reader']:6.3f} s, "
          f"anonymous {mib(warm['mem']['RssAnon'])}, mapped {mib(warm['mem']['RssFile'])}")
    print(f"   {LOOKUPS:,} lookups ({warm['found']:,} found):                   {warm['lookup_us']:6.1f} us each; then "
          f"anonymous {mib(warm['mem_lookups']['RssAnon'])}, mapped {mib(warm['mem_lookups']['RssFile'])}")
    print(f"   writer start-up (also lists packs/):                  {warm['writer']:6.3f} s")
    print(f"   a new index object of {PACKS_PER_INDEX * PER_PACK:,} entries, merged at the next open: "
          f"{newer['reader']:.3f} s")
    s = at_scale
    ns = s["entries"]
    print(f"\n2. a synthetic cache of {ns:,} entries ({s['packs']:,} packs): file {s['file'] / GIB:.2f} GiB "
          f"({s['file'] / ns:.1f} bytes per entry), written in {written:.1f} s")
    print(f"   start-up (map, BLAKE3 check of the file):   {s['open']:6.2f} s; anonymous {mib(s['mem_open']['RssAnon'])}, "
          f"mapped {mib(s['mem_open']['RssFile'])} (the check reads every page once)")
    print(f"   {LOOKUPS:,} lookups ({s['found']:,} found):      {s['lookup_us']:6.1f} us each; anonymous "
          f"{mib(s['mem_lookups']['RssAnon'])}")
    print(f"   gc: chunks grouped by pack, live bytes counted per pack: {s['gc_group']:.1f} s")
    for label, count in (("10 TB of 256 KiB chunks", TEN_TB), ("10^8 chunks", 10**8)):
        f = count / ns
        print(f"   {label:24} {count:>12,} entries: cache file {count * s['file'] / ns / GIB:5.1f} GiB, start-up "
              f"{s['open'] * f:5.1f} s, first open {cold['reader'] / n * count / 60:5.0f} min, "
              f"index objects {count * on_store / n / GIB:5.1f} GiB")
    packs = 10**8 // PER_PACK
    indexes = -(-packs // PACKS_PER_INDEX)
    print(f"\n   gc over 10^8 chunks, on paper: {packs:,} packs listed at 1,000 keys per LIST ({packs // 1000:,} requests), "
          f"{indexes:,} index objects ({-(-indexes // 1000):,} LISTs; GETs only for those not cached), "
          f"grouping {s['gc_group'] * 10**8 / ns:.0f} s, then per pack it acts on: a HEAD and a DELETE, or "
          f"ranged GETs and new packs")


if __name__ == "__main__":
    main()
