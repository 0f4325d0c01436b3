"""What synced downloads cost: casstore's ``download_artifacts`` (every file synced to the
disk before it returns) against the same download unsynced (``CASSTORE_DURABLE=0``) and
against MLflow 3.x's ``download_artifacts`` (sqlite, local artifact directory; it syncs
nothing), side by side in one run on a local disk.

Each download is made a fourth way as well, synced the plain way that casstore's own
replaces: the large file with its write-back left to the ``fsync`` at the end
(``casstore._files.WRITEBACK_STEP`` set past its size) rather than started every 8 MiB as
it is written; the small files by the store's 4 I/O threads rather than 16
(``casstore._files.SYNCING_WORKERS``), each thread waiting for its files' ``fsync``.

Two downloads of one run each: one file of ``--size-mib`` MiB (default 256; ``--quick``
32), and ``--files`` files of 1 to 8 KiB in 20 directories (default 2,000; ``--quick``
200). The peers take turns (``--repeat`` times, the order rotating); medians are printed
with the ratios. Each download goes to a new directory, removed afterwards.

    python benchmarks/bench_downloads.py             # 256 MiB and 2,000 files, 3 repetitions
    python benchmarks/bench_downloads.py --quick
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

#: goal: a synced download of many small files at most this many times MLflow's unsynced one
SMALL_GOAL = 2.0
PLAIN = "casstore (synced, the plain way)"


def make_tree(root: Path, n: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    for i in range(n):
        sub = root / f"part{i % 20:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i:05d}.bin").write_bytes(rng.randbytes(rng.randint(1 << 10, 8 << 10)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="32 MiB and 200 files, 1 repetition")
    ap.add_argument("--size-mib", type=int)
    ap.add_argument("--files", type=int)
    ap.add_argument("--repeat", type=int)
    args = ap.parse_args(argv)
    size = (args.size_mib or (32 if args.quick else 256)) << 20
    n = args.files or (200 if args.quick else 2000)
    repeat = args.repeat or (1 if args.quick else 3)
    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    import mlflow

    import casstore
    from casstore import _files as files

    with tempfile.TemporaryDirectory(prefix="casstore-bench-dl-", dir=os.environ.get("CASSTORE_BENCH_DIR")) as tmp:
        work = Path(tmp)
        big, tree = work / "src" / "big.bin", work / "src" / "tree"
        big.parent.mkdir(parents=True)
        with open(big, "wb") as f:
            for _ in range(0, size, 1 << 20):
                f.write(os.urandom(1 << 20))
        make_tree(tree, n)
        # casstore: one run per download
        store = str(work / "casstore")
        client = casstore.MlflowClient(tracking_uri=store)
        exp = client.create_experiment("downloads")
        cas = {}
        for what, src in (("big", big), ("tree", tree)):
            run = client.create_run(exp).info.run_id
            (client.log_artifact if what == "big" else client.log_artifacts)(run, str(src))
            client.set_terminated(run)
            cas[what] = run
        # MLflow: the same, sqlite and a local artifact directory
        mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
        ml_exp = mlflow.create_experiment("downloads", artifact_location=(work / "mlruns").as_uri())
        ml = {}
        for what, src in (("big", big), ("tree", tree)):
            with mlflow.start_run(experiment_id=ml_exp) as r:
                (mlflow.log_artifact if what == "big" else mlflow.log_artifacts)(str(src))
            ml[what] = r.info.run_id

        def casstore_download(what: str, durable: bool) -> Callable[[Path], None]:
            def run(dst: Path) -> None:
                os.environ["CASSTORE_DURABLE"] = "1" if durable else "0"
                client.download_artifacts(cas[what], "", str(dst))
            return run

        def mlflow_download(what: str) -> Callable[[Path], None]:
            def run(dst: Path) -> None:
                mlflow.artifacts.download_artifacts(run_id=ml[what], dst_path=str(dst))
            return run

        def synced_plain(what: str) -> Callable[[Path], None]:
            def run(dst: Path) -> None:
                os.environ["CASSTORE_DURABLE"] = "1"
                files.WRITEBACK_STEP, files.SYNCING_WORKERS = 1 << 62, 1  # the store's io_workers (4) then
                try:
                    client.download_artifacts(cas[what], "", str(dst))
                finally:
                    files.WRITEBACK_STEP, files.SYNCING_WORKERS = step, workers
            return run

        step, workers = files.WRITEBACK_STEP, files.SYNCING_WORKERS
        peers = {
            "casstore (synced)": casstore_download,
            "casstore (CASSTORE_DURABLE=0)": lambda what: casstore_download(what, False),
            "MLflow 3.x": lambda what: mlflow_download(what),
            PLAIN: synced_plain,
        }
        times: dict[tuple[str, str], list[float]] = {}
        for i in range(repeat):
            names = list(peers)
            names = names[i % len(names):] + names[:i % len(names)]  # who goes first rotates
            for what in ("big", "tree"):
                for name in names:
                    fn = peers[name](what, True) if name == "casstore (synced)" else peers[name](what)
                    dst = work / f"out-{i}-{what}-{len(times)}"
                    t0 = time.perf_counter()
                    fn(dst)
                    times.setdefault((what, name), []).append(time.perf_counter() - t0)
                    shutil.rmtree(dst)
        os.environ.pop("CASSTORE_DURABLE", None)

    print(f"downloads on a local disk: one file of {size >> 20} MiB, and {n} files of 1 to 8 KiB; median of "
          f"{repeat}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print("\n| download | casstore (synced) | casstore (CASSTORE_DURABLE=0) | MLflow 3.x | synced / unsynced | synced / MLflow |")
    print("|---|---|---|---|---|---|")
    med = {k: statistics.median(v) for k, v in times.items()}
    for what, label in (("big", f"1 file, {size >> 20} MiB"), ("tree", f"{n} small files")):
        s, u, m = (med[(what, p)] for p in list(peers)[:3])
        print(f"| {label} | {s:.2f} s | {u:.2f} s | {m:.2f} s | {s / u:.2f} | {s / m:.2f} |")
    s, e = med[("big", "casstore (synced)")], med[("big", PLAIN)]
    print(f"\nsynced download of {size >> 20} MiB, write-back started every {step >> 20} MiB as written: {s:.2f} s; "
          f"left to the fsync at the end: {e:.2f} s ({e / s:.2f}x)")
    s, e = med[("tree", "casstore (synced)")], med[("tree", PLAIN)]
    print(f"synced download of {n} small files by {workers} threads: {s:.2f} s; by {client.store.io_workers}: {e:.2f} s "
          f"({e / s:.2f}x)")
    ratio = med[("tree", "casstore (synced)")] / med[("tree", "MLflow 3.x")]
    print(f"\nsynced download of {n} small files / MLflow's unsynced one = {ratio:.2f}   "
          f"(goal <= {SMALL_GOAL}: {'met' if ratio <= SMALL_GOAL else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
