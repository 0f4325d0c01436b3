"""Local stores: the loose layout against the packs layout, side by side, interleaved.

Per repetition, for a fresh random file (256 MiB; ``--quick``: 32 MiB): ``put_file`` into
a new store of each layout, then a copy with 1 MiB overwritten in the middle into the
same store (the stat cache off, so both hash every byte), then a verified ``get_file``.
Prints medians and the packs / loose ratios: the measurement behind keeping local
stores loose by default.

    python benchmarks/bench_packs_local.py
    python benchmarks/bench_packs_local.py --quick
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

from casstore.objects import open_store  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="32 MiB, 2 repetitions")
    parser.add_argument("--size-mib", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=None)
    args = parser.parse_args(argv)
    size = (args.size_mib or (32 if args.quick else 256)) << 20
    repeat = args.repeat or (2 if args.quick else 5)
    times: dict[str, list[float]] = collections.defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="casstore-bench-packs-local-", dir=os.environ.get("TMPDIR")) as tmp:
        src, changed = Path(tmp) / "v1.bin", Path(tmp) / "v2.bin"
        data = bytearray(os.urandom(size))
        src.write_bytes(data)
        data[size // 2 : size // 2 + (1 << 20)] = os.urandom(1 << 20)
        changed.write_bytes(data)
        del data
        for rep in range(repeat):
            order = ("loose", "packs") if rep % 2 == 0 else ("packs", "loose")
            for layout in order:
                root = Path(tmp) / f"{layout}-{rep}"
                store = open_store(root, layout=layout, stat_cache=False)
                for name, fn in (
                    ("fresh", lambda: (store.put_file(src), store.flush())),
                    ("changed", lambda: (store.put_file(changed), store.flush())),
                ):
                    t0 = time.perf_counter()
                    fn()
                    times[f"{layout} {name}"].append(time.perf_counter() - t0)
                digest = store.put_file(changed).digest
                out = Path(tmp) / "out.bin"
                t0 = time.perf_counter()
                store.get_file(digest, out)
                times[f"{layout} get_file"].append(time.perf_counter() - t0)
                out.unlink()
                shutil.rmtree(root)
            print(f"  rep {rep + 1}/{repeat}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\n{size >> 20} MiB file, median of {repeat} repetitions (seconds)")
    for what in ("fresh", "changed", "get_file"):
        loose, packs = med[f"loose {what}"], med[f"packs {what}"]
        print(f"{what:9} loose {loose:7.3f}  packs {packs:7.3f}  packs / loose = {packs / loose:.2f}")


if __name__ == "__main__":
    main()
