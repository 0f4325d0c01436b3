"""Store growth for five versions of one large file, 1 MiB overwritten in each: casstore's stores beside restic's repository, on the same data in the same run.

The data: a file of random bytes (256 MiB; ``--quick``: 32 MiB), then four more versions,
each the one before with 1 MiB overwritten at a random offset (the same bytes every run).
Growth is what a store holds after all five versions over the size of one version (1.0
would be perfect, 5.0 no deduplication at all). Two figures:

- **Chunkers**: the unique chunk bytes after all five, for casstore's loose-chunk default
  (FastCDC 256 KiB / 1 MiB / 4 MiB), the pack default (``PACK_CHUNKER``, 64 KiB / 256 KiB /
  1 MiB) and two other sizes; beside them restic's blob bytes (``restic stats --mode
  raw-data``: its blobs as stored, each with its 32 bytes of encryption, and the small
  tree blobs of the snapshots).
- **Whole stores on disk** (the goal): each version is written to one file, and that file is
  stored in turn into a casstore store of the packs layout, a loose store (the local
  default) and each restic repository (``restic backup --force``). After each version every
  file under each store's directory is counted, by the same function for all, less what
  creating the store wrote (casstore's ``casstore.json``; restic's ``config`` and key).
  This, not ``raw-data``, is the figure compared: ``raw-data`` leaves out restic's pack
  headers, index files and snapshots, which restic needs as casstore needs the pack
  headers, index and recipes its own figure counts; the directory on disk is what each
  store costs, counted alike.

restic (0.14 in Debian) runs with repository version 2, the version it creates today, and
``--compression off``: casstore stores chunks uncompressed and the data is random, so
compression could only add framing; with it off restic stores data blobs as they are (it
still compresses its trees, index and snapshots, as v2 always does). restic picks a random
chunker polynomial for each repository at ``init``, so its cut points, and its growth, vary
from one repository to another: its figure is the median over ``--restic-repos``
repositories (3; ``--quick``: 1), each listed. Nothing is timed, only bytes counted, so the
order of the stores does not matter. Without ``restic`` on the PATH the script says that
restic was not measured and does not judge the goal; it never prints a figure it did not
measure.

    python benchmarks/bench_packs_dedup.py          # 256 MiB, 3 restic repositories
    python benchmarks/bench_packs_dedup.py --quick  # 32 MiB, 1 restic repository
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

from _common import dir_size, scratch  # noqa: E402

from casstore.objects import open_store  # noqa: E402
from casstore.objects.chunking import DEFAULT_CHUNKER, Chunker, ChunkerParams  # noqa: E402
from casstore.objects.digest import hash_bytes  # noqa: E402
from casstore.objects.packs import PACK_CHUNKER  # noqa: E402

CHUNKERS = {
    "loose default 1 MiB": DEFAULT_CHUNKER,
    "128 KiB": ChunkerParams(min_size=32 << 10, avg_size=128 << 10, max_size=512 << 10),
    "pack default": PACK_CHUNKER,
    "32 KiB": ChunkerParams(min_size=8 << 10, avg_size=32 << 10, max_size=128 << 10),
}
COUNT = 5


def versions(size: int, seed: int = 7) -> Iterator[bytearray]:
    """The five versions in turn, one buffer changed in place (the same bytes every call)."""
    rng = random.Random(seed)
    cur = bytearray(size)
    for i in range(0, size, 1 << 20):
        cur[i : i + (1 << 20)] = rng.randbytes(min(1 << 20, size - i))
    yield cur
    for _ in range(COUNT - 1):
        at = rng.randrange(0, size - (1 << 20))
        cur[at : at + (1 << 20)] = rng.randbytes(1 << 20)
        yield cur


def growth(params: ChunkerParams, size: int) -> tuple[float, int]:
    """Unique chunk bytes after the five versions over one version, and chunks per version."""
    chunker = Chunker(params)
    seen: dict[str, int] = {}
    count = 0
    for v in versions(size):
        for ch in chunker.cut_buffer(v):
            count += 1
            seen.setdefault(hash_bytes(ch, parallel=False), len(ch))
    return sum(seen.values()) / size, count // COUNT


# ---- restic ---------------------------------------------------------------------------------------


class ResticFailed(Exception):
    """restic could not be run or did not do what it was asked: restic is not measured."""


class Restic:
    """One restic repository in a directory, driven through restic's command line."""

    def __init__(self, exe: str, repo: Path) -> None:
        self.exe, self.repo = exe, repo
        # restic's own settings from the environment (a repository, compression ...) stay out
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RESTIC_")}
        self.env["RESTIC_PASSWORD"] = "casstore-bench"
        self.blobs_first = 0  # data blobs of the first version: restic's chunks per version

    def run(self, *args: str, cwd: Path | None = None) -> str:
        cmd = [self.exe, "--repo", str(self.repo), "--no-cache", "--quiet", *args]
        try:
            p = subprocess.run(cmd, env=self.env, cwd=cwd, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ResticFailed(f"`restic {args[0]}` could not run: {e}") from e
        if p.returncode:
            why = (p.stderr.strip().splitlines() or ["no message"])[-1]
            raise ResticFailed(f"`restic {args[0]}` failed (status {p.returncode}): {why}")
        return p.stdout

    def init(self) -> None:
        self.run("init", "--repository-version", "2")

    def backup(self, path: Path) -> None:
        out = self.run("backup", "--json", "--force", "--compression", "off", path.name, cwd=path.parent)
        if not self.blobs_first:
            self.blobs_first = next((int(m.get("data_blobs", 0)) for m in map(_json, out.splitlines())
                                     if m.get("message_type") == "summary"), 0)

    def raw_data(self) -> int:
        """The bytes of the repository's blobs (``restic stats --mode raw-data``)."""
        try:
            return int(json.loads(self.run("stats", "--json", "--mode", "raw-data"))["total_size"])
        except (ValueError, KeyError, TypeError) as e:
            raise ResticFailed(f"`restic stats --mode raw-data --json` gave no total_size: {e}") from e


def _json(line: str) -> dict[str, object]:
    try:
        m = json.loads(line)
    except ValueError:
        return {}
    return m if isinstance(m, dict) else {}


def restic_version(exe: str) -> str:
    """``restic version``'s version (``0.14.0``), or why restic cannot be run."""
    path = shutil.which(exe)
    if path is None:
        raise ResticFailed(f"{exe!r} is not on the PATH (Debian: apt-get install restic)")
    try:
        out = subprocess.run([path, "version"], capture_output=True, text=True, timeout=60).stdout.split()
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ResticFailed(f"`{path} version` could not run: {e}") from e
    if len(out) < 2 or out[0] != "restic":
        raise ResticFailed(f"`{path} version` did not say it is restic: {' '.join(out[:6])!r}")
    return out[1]


# ---- the stores, side by side ---------------------------------------------------------------------


def stores_growth(work: Path, size: int, exe: str | None, repos: int) -> tuple[dict[str, list[float]], list[Restic], str]:
    """Each version stored into every store; each store's bytes over one version after each.

    Returns the growth after each version per store, the restic repositories that were
    measured (none when restic failed or ``exe`` is None), and why restic failed ("" if it did not)."""
    stores = {"casstore packs": open_store(work / "packs", layout="packs", stat_cache=False, durable=False),
              "casstore loose": open_store(work / "loose", layout="loose", stat_cache=False, durable=False)}
    dirs = {"casstore packs": work / "packs", "casstore loose": work / "loose"}
    restics: list[Restic] = []
    why = ""
    if exe is not None:
        try:
            for i in range(repos):
                r = Restic(exe, work / f"restic-{i + 1}")
                r.init()
                restics.append(r)
                dirs[f"restic repository {i + 1}"] = r.repo
        except ResticFailed as e:
            restics, why = [], str(e)
            dirs = {k: v for k, v in dirs.items() if not k.startswith("restic")}
    empty = {name: dir_size(d) for name, d in dirs.items()}  # what creating each store wrote
    out: dict[str, list[float]] = {name: [] for name in dirs}
    data = work / "data" / "model.bin"
    data.parent.mkdir()
    for v in versions(size):
        data.write_bytes(v)
        for store in stores.values():
            store.put_file(data)
            store.flush()
        try:
            for r in restics:
                r.backup(data)
        except ResticFailed as e:
            restics, why = [], str(e)
        for name, d in dirs.items():
            if restics or not name.startswith("restic"):
                out[name].append((dir_size(d) - empty[name]) / size)
    return {k: v for k, v in out.items() if len(v) == COUNT}, restics, why


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="32 MiB, one restic repository")
    parser.add_argument("--size-mib", type=int, default=None, help="the size of one version (at least 2)")
    parser.add_argument("--restic-repos", type=int, default=None,
                        help="restic repositories, each with its own random chunker (default 3; --quick: 1)")
    parser.add_argument("--restic", default="restic", help="the restic command (default: restic on the PATH)")
    parser.add_argument("--no-restic", action="store_true", help="measure casstore only")
    parser.add_argument("--dir", type=Path, help="working directory (default: a new one under the system temp dir)")
    args = parser.parse_args(argv)
    size = (args.size_mib or (32 if args.quick else 256)) << 20
    repos = args.restic_repos or (1 if args.quick else 3)
    if size < 2 << 20 or repos < 1:
        parser.error("--size-mib must be at least 2 and --restic-repos at least 1")

    exe: str | None = None
    why = "restic was not asked for (--no-restic)"
    version = ""
    if not args.no_restic:
        try:
            version, exe = restic_version(args.restic), args.restic
        except ResticFailed as e:
            why = str(e)
    print(f"five versions of a {size >> 20} MiB file, 1 MiB overwritten in each; load {os.getloadavg()[0]:.1f}")

    with scratch("casstore-bench-dedup-", args.dir) as work:
        stored, restics, failed = stores_growth(work, size, exe, repos)
        raw = [r.raw_data() / size for r in restics] if restics else []

    restic_growth = statistics.median(g[-1] for k, g in stored.items() if k.startswith("restic")) if restics else None
    restic_raw = statistics.median(raw) if raw else None
    why = failed or why
    if restics:
        label = f"{version}, repository v2, --compression off"
        print(f"restic {label}" + (f", {len(restics)} repositories (median)" if len(restics) > 1 else ""))
    else:
        print(f"restic: NOT MEASURED: {why}; the figures below are casstore's alone")

    print(f"\nchunk bytes after five versions over one version (unique chunks)")
    print(f"{'chunker':26} {'avg chunk':>10} {'chunks/version':>15} {'growth':>8} {'/ restic':>9}")
    for name, params in CHUNKERS.items():
        g, n = growth(params, size)
        vs = f"{g / restic_raw:>9.3f}" if restic_raw else f"{'-':>9}"
        print(f"{name:26} {params.avg_size >> 10:>6} KiB {n:>15} {g:>7.3f}x {vs}")
    if restic_raw is not None:
        blobs = statistics.median(r.blobs_first for r in restics)
        spread = f" (repositories: {', '.join(f'{x:.3f}x' for x in raw)})" if len(raw) > 1 else ""
        print(f"{'restic blobs (raw-data)':26} {1024:>6} KiB {blobs:>15.0f} {restic_raw:>7.3f}x {1.0:>9.3f}{spread}")

    print("\nwhole stores on disk: every file each store added, over one version, after each version")
    print(f"{'store':26} " + " ".join(f"{'v' + str(i + 1):>7}" for i in range(COUNT)) + f" {'/ restic':>9}")
    for name, g in stored.items():
        vs = f"{g[-1] / restic_growth:>9.3f}" if restic_growth else f"{'-':>9}"
        print(f"{name:26} " + " ".join(f"{x:>6.3f}x" for x in g) + f" {vs}")
    if restic_growth is not None and len(restics) > 1:
        print(f"{'restic (median)':26} {'':>31} {restic_growth:>6.3f}x {1.0:>9.3f}")

    packs, loose = stored["casstore packs"][-1], stored["casstore loose"][-1]
    if restic_growth is None:
        print(f"\npacks store growth = {packs:.3f}x, loose store {loose:.3f}x; restic was not measured "
              f"(goal <= restic's growth: not judged, restic was not measured)")
        return
    ratio = packs / restic_growth
    if size == 256 << 20:
        judged = f"(goal <= 1: {'met' if ratio <= 1 else 'MISSED'})"
    else:
        judged = f"(goal <= 1: not judged at {size >> 20} MiB; the goal is set for 256 MiB)"
    print(f"\nloose store growth / restic's = {loose / restic_growth:.3f} ({loose:.3f}x against {restic_growth:.3f}x)")
    print(f"packs store growth / restic's = {ratio:.3f} ({packs:.3f}x against {restic_growth:.3f}x, "
          f"restic measured on the same data) {judged}")


if __name__ == "__main__":
    main()
