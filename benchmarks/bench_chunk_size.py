"""Which average chunk size: deduplication, object count and ingest speed on versioned data.

    python benchmarks/bench_chunk_size.py            # 256 MiB files, 4 forest versions
    python benchmarks/bench_chunk_size.py --quick    # 32 MiB files, small forest

For each average chunk size (min = avg/4, max = avg*4) and each kind of versioned
data, every version is stored in turn into one fresh local store, and we measure:

- dedup: bytes the later versions added to the store / their size (lower is better;
  1.00 means nothing was shared);
- objects per GiB: chunk objects written per GiB of new data, and what their PUTs cost
  on S3 at $5 per million requests;
- ingest: MiB/s of storing the first version (new data, local disk, not durable), and
  the CPU seconds it took per GiB (steadier than wall time on a shared machine).

The data:

(a) a large binary file (random bytes), then the same with 1 MiB inserted at a third
    and 2 MiB overwritten at two thirds;
(b) pickles of a RandomForest grown with ``warm_start``, 10% more trees each version;
(c) a file that grows by appending 10% each version.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from blake3 import blake3  # noqa: E402

from casstore.objects import ChunkerParams, open_store  # noqa: E402

MIB = 1 << 20
AVG_SIZES = [256 << 10, 512 << 10, 1 << 20, 2 << 20, 4 << 20]
PUT_COST_PER_MILLION = 5.0  # USD, S3 standard PUT requests


def params_for(avg: int) -> ChunkerParams:
    return ChunkerParams(min_size=avg // 4, avg_size=avg, max_size=avg * 4)


def random_bytes(n: int, seed: str) -> bytes:
    return blake3(seed.encode()).digest(length=n)


# ---- the versioned data sets ------------------------------------------------------------------


def edited_binary(size: int) -> list[bytes]:
    v1 = random_bytes(size, "binary v1")
    third, two_thirds = size // 3, 2 * size // 3
    v2 = bytearray(v1[:third] + random_bytes(MIB, "inserted") + v1[third:])
    at = two_thirds + MIB
    v2[at : at + 2 * MIB] = random_bytes(2 * MIB, "overwritten")
    return [v1, bytes(v2)]


def forest_pickles(n_samples: int, first_trees: int, versions: int) -> list[bytes]:
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    X, y = make_classification(n_samples=n_samples, n_features=20, n_informative=10, random_state=0)
    forest = RandomForestClassifier(n_estimators=first_trees, warm_start=True, random_state=0, n_jobs=1)
    out = []
    trees = first_trees
    for _ in range(versions):
        forest.n_estimators = trees
        forest.fit(X, y)
        out.append(pickle.dumps(forest, protocol=5))
        trees = int(round(trees * 1.1)) if int(round(trees * 1.1)) > trees else trees + 1
    return out


def appended(size: int, versions: int) -> list[bytes]:
    data = random_bytes(size, "appended v1")
    out = [data]
    for i in range(1, versions):
        data = data + random_bytes(len(data) // 10, f"appended {i}")
        out.append(data)
    return out


# ---- measuring ------------------------------------------------------------------------------------


def measure(versions: list[bytes], avg: int, work: Path, repeats: int) -> dict[str, float]:
    """Store every version in turn into a fresh store; report dedup, objects and ingest speed."""
    ingest: list[float] = []
    cpu: list[float] = []
    for _ in range(repeats):
        store = work / "store"
        objects = open_store(store, chunker=params_for(avg), durable=False)
        src = work / "v.bin"
        src.write_bytes(versions[0])
        c0, t0 = _cpu(), time.perf_counter()
        objects.put_file(src)
        ingest.append(len(versions[0]) / (time.perf_counter() - t0) / MIB)
        cpu.append((_cpu() - c0) / (len(versions[0]) / (1 << 30)))
        first_chunks, first_bytes = objects.chunks_written, objects.bytes_written
        for v in versions[1:]:
            src.write_bytes(v)
            objects.put_file(src)
        later_size = sum(len(v) for v in versions[1:])
        added = objects.bytes_written - first_bytes
        added_chunks = objects.chunks_written - first_chunks
        shutil.rmtree(store)
    return {
        "dedup": added / later_size,
        "first_objects_per_gib": first_chunks / (len(versions[0]) / (1 << 30)),
        "added_objects_per_gib_of_versions": added_chunks / (later_size / (1 << 30)),
        "put_cost_per_gib_usd": first_chunks / (len(versions[0]) / (1 << 30)) * PUT_COST_PER_MILLION / 1e6,
        "ingest_mib_s": statistics.median(ingest),
        "ingest_cpu_s_per_gib": statistics.median(cpu),
        "first_size_mib": len(versions[0]) / MIB,
    }


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def datasets(quick: bool) -> Iterator[tuple[str, Callable[[], list[bytes]]]]:
    size = (32 if quick else 256) * MIB
    yield "(a) binary, 1 MiB inserted + 2 MiB changed", lambda: edited_binary(size)
    if quick:
        yield "(b) RandomForest pickles, +10% trees", lambda: forest_pickles(8000, 20, 3)
    else:
        yield "(b) RandomForest pickles, +10% trees", lambda: forest_pickles(60000, 30, 4)
    yield "(c) appended, +10% per version", lambda: appended(size, 3)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small data, one repeat")
    ap.add_argument("--repeats", type=int, help="repeats of the ingest timing (median; default 3, quick 1)")
    ap.add_argument("--dir", type=Path, help="working directory (default: a new one under the system temp dir)")
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)

    work = Path(tempfile.mkdtemp(prefix="casstore-chunks-", dir=args.dir))
    results: dict[str, dict[str, dict[str, float]]] = {}
    try:
        print(f"chunk size benchmark, {'quick' if args.quick else 'full'}; load {os.getloadavg()[0]:.1f}, "
              f"{os.cpu_count()} CPUs; ingest is the median of {repeats}")
        for name, make in datasets(args.quick):
            versions = make()
            sizes = ", ".join(f"{len(v) / MIB:.1f}" for v in versions)
            print(f"\n{name}: {len(versions)} versions of {sizes} MiB")
            print(f"  {'avg chunk':>9s}  {'dedup':>6s}  {'objects/GiB':>11s}  {'PUT $/GiB':>9s}  {'added obj/GiB':>13s}  {'ingest MiB/s':>12s}  {'CPU s/GiB':>9s}")
            results[name] = {}
            for avg in AVG_SIZES:
                r = measure(versions, avg, work, repeats)
                results[name][f"{avg >> 10} KiB"] = r
                print(f"  {avg >> 10:>5d} KiB  {r['dedup']:6.3f}  {r['first_objects_per_gib']:11.0f}  "
                      f"{r['put_cost_per_gib_usd']:9.4f}  {r['added_objects_per_gib_of_versions']:13.0f}  {r['ingest_mib_s']:12.0f}  {r['ingest_cpu_s_per_gib']:9.2f}")
        if args.json:
            args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "quick": args.quick,
                                             "repeats": repeats, "results": results}, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
