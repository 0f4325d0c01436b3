"""Many small files: casstore (loose and packs stores) against MLflow 3.x and s3fs, on S3
(moto on loopback, every request counted) and on a local disk, side by side in one run.

A directory of ``--files`` files of 1 to 8 KiB of random bytes (default 10,000; ``--quick``
1,000), in 100 subdirectories, is logged into a new run by each tool, the tools taking
turns (``--repeat`` times, who goes first alternating); medians are printed with the ratios.

* S3: casstore ``log_files`` of the tree into a run of a loose store and of a packs
  store, then the run's end; MLflow ``log_artifacts`` with its artifacts on the same
  server (sqlite for the tracking data); s3fs ``put(recursive=True)``. Requests are
  counted at a loopback proxy in front of moto (``tests/s3_server.py``'s ``FaultProxy``),
  so every client is counted alike. Goal: the packs store at most 1/20 of the loose
  store's requests (a run created in a packs store binds a call's artifacts in one batch
  record; a loose store's run writes a record per artifact).
* Local: ``casstore.log_artifacts`` (durable) into a loose store and a packs store against
  ``mlflow.log_artifacts`` (sqlite, local artifact directory). Goal: the packs store no
  slower than MLflow (a run of a loose store keeps a record per artifact).

    python benchmarks/bench_small_files.py             # 10,000 files, 3 repetitions
    python benchmarks/bench_small_files.py --quick     # 1,000 files, 1 repetition
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import random
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "benchmarks")]

from s3_server import DUMMY_CREDENTIALS, FaultProxy, LoopbackS3, make_bucket  # noqa: E402

BUCKET = "casstore-small"


def make_tree(root: Path, n: int, seed: int = 1) -> int:
    rng = random.Random(seed)
    total = 0
    for i in range(n):
        sub = root / f"part{i % 100:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        data = rng.randbytes(rng.randint(1 << 10, 8 << 10))
        (sub / f"f{i:05d}.bin").write_bytes(data)
        total += len(data)
    return total


def quiet_mlflow() -> Any:
    warnings.filterwarnings("ignore")
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    for name in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import mlflow

    return mlflow


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def s3_side_by_side(tree: Path, work: Path, repeat: int, mlflow: Any) -> tuple[dict[str, list[float]], dict[str, collections.Counter[str]]]:
    import s3fs

    from casstore.objects import open_store
    from casstore.runs import RunStore
    from casstore.tracking._artifacts import walk_dir

    times: dict[str, list[float]] = collections.defaultdict(list)
    requests: dict[str, collections.Counter[str]] = {}
    with LoopbackS3() as moto:
        make_bucket(moto.endpoint_url, BUCKET)
        proxy = FaultProxy(moto.endpoint_url)
        try:
            os.environ.update(DUMMY_CREDENTIALS)
            os.environ["AWS_ENDPOINT_URL"] = os.environ["MLFLOW_S3_ENDPOINT_URL"] = proxy.endpoint_url
            items = walk_dir(str(tree), "small")

            def casstore_side(layout: str, rep: int) -> Callable[[], None]:
                def go() -> None:
                    store = RunStore(open_store(f"s3://{BUCKET}/{layout}-{rep}", layout=layout, stat_cache=False))
                    run = store.create_run(store.get_or_create_experiment("bench"))
                    proxy.reset_counts()
                    t = timed(lambda: (run.log_files(items), run.end()))
                    times[f"casstore {layout}"].append(t)
                    requests[f"casstore {layout}"] = _counts(proxy)
                return go

            def mlflow_side(rep: int) -> Callable[[], None]:
                def go() -> None:
                    mlflow.set_tracking_uri(f"sqlite:///{work}/mlflow-s3-{rep}.db")
                    exp = mlflow.create_experiment("bench", artifact_location=f"s3://{BUCKET}/mlflow-{rep}")
                    run = mlflow.start_run(experiment_id=exp)
                    proxy.reset_counts()
                    t = timed(lambda: (mlflow.log_artifacts(str(tree), "small"), mlflow.end_run()))
                    del run
                    times["mlflow"].append(t)
                    requests["mlflow"] = _counts(proxy)
                return go

            def s3fs_side(rep: int) -> Callable[[], None]:
                def go() -> None:
                    fs = s3fs.S3FileSystem(endpoint_url=proxy.endpoint_url, skip_instance_cache=True)
                    fs.ls(BUCKET)
                    proxy.reset_counts()
                    times["s3fs put"].append(timed(lambda: fs.put(str(tree), f"{BUCKET}/s3fs-{rep}/small", recursive=True)))
                    requests["s3fs put"] = _counts(proxy)
                return go

            for rep in range(repeat):
                sides = [casstore_side("loose", rep), casstore_side("packs", rep), s3fs_side(rep)]
                if mlflow is not None:
                    sides.append(mlflow_side(rep))
                for go in sides if rep % 2 == 0 else sides[::-1]:
                    go()
        finally:
            proxy.close()
    return times, requests


def _counts(proxy: FaultProxy) -> collections.Counter[str]:
    out: collections.Counter[str] = collections.Counter()
    for (method, _area), n in proxy.requests.items():
        out[method] += n
    return out


def local_side_by_side(tree: Path, work: Path, repeat: int, mlflow: Any) -> dict[str, list[float]]:
    import casstore
    from casstore.tracking import fluent

    times: dict[str, list[float]] = collections.defaultdict(list)

    def cas(rep: int, layout: str) -> None:
        os.environ["CASSTORE_LAYOUT"] = layout
        fluent._reset()
        casstore.set_tracking_uri(str(work / f"cas-{layout}-{rep}"))
        casstore.set_experiment("bench")
        casstore.start_run()
        times[f"casstore {layout}"].append(timed(lambda: (casstore.log_artifacts(str(tree), "small"), casstore.end_run())))
        os.environ.pop("CASSTORE_LAYOUT", None)

    def ml(rep: int) -> None:
        root = work / f"mlflow-{rep}"
        root.mkdir()
        mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
        exp = mlflow.create_experiment("bench", artifact_location=(root / "artifacts").as_uri())
        mlflow.start_run(experiment_id=exp)
        times["mlflow"].append(timed(lambda: (mlflow.log_artifacts(str(tree), "small"), mlflow.end_run())))

    for rep in range(repeat):
        sides: list[Callable[[], None]] = [lambda: cas(rep, "loose"), lambda: cas(rep, "packs")]
        if mlflow is not None:
            sides.append(lambda: ml(rep))
        for go in sides if rep % 2 == 0 else sides[::-1]:
            go()
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 files, 1 repetition")
    parser.add_argument("--files", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=None)
    args = parser.parse_args(argv)
    n = args.files or (1_000 if args.quick else 10_000)
    repeat = args.repeat or (1 if args.quick else 3)
    try:
        mlflow = quiet_mlflow()
    except ImportError:
        mlflow = None
        print("MLflow is not installed: its column is skipped (pip install 'casstore[bench]')")
    with tempfile.TemporaryDirectory(prefix="casstore-bench-small-") as tmp:
        work = Path(tmp)
        os.environ["CASSTORE_CACHE_DIR"] = str(work / "cache")
        os.environ["CASSTORE_STAT_CACHE"] = "0"
        tree = work / "small"
        total = make_tree(tree, n)
        print(f"{n:,} files of 1 to 8 KiB ({total / 2**20:.1f} MiB) in 100 directories; medians of {repeat}")
        s3_times, s3_requests = s3_side_by_side(tree, work, repeat, mlflow)
        local = local_side_by_side(tree, work, repeat, mlflow)
        from casstore.runs.index import flush_pending

        flush_pending()  # the search index's summaries of the runs ended, before the stores go
    print("\nS3 (moto on loopback, requests counted at a proxy in front of it): the log and the run's end")
    print(f"{'':18} {'seconds':>8} {'requests':>9} {'per file':>9}   by method")
    for name in ("casstore loose", "casstore packs", "mlflow", "s3fs put"):
        if name not in s3_times:
            continue
        req = s3_requests[name]
        total_req = sum(req.values())
        methods = ", ".join(f"{m} {k}" for m, k in sorted(req.items()))
        print(f"{name:18} {statistics.median(s3_times[name]):8.2f} {total_req:9d} {total_req / n:9.2f}   {methods}")
    loose_req = sum(s3_requests["casstore loose"].values())
    packs_req = sum(s3_requests["casstore packs"].values())
    share = packs_req / loose_req
    met = "met" if share <= 1 / 20 else "MISSED"
    judged = f"(goal <= 1/20: {met})" if n >= 10_000 else f"(goal <= 1/20: not judged at {n:,} files)"
    print(f"packs / loose requests = {share:.3f} {judged}")
    if "mlflow" in s3_times:
        print(f"casstore packs / MLflow time on S3 = "
              f"{statistics.median(s3_times['casstore packs']) / statistics.median(s3_times['mlflow']):.2f}")
    print("\nLocal disk (durable): the log and the run's end")
    for name in ("casstore loose", "casstore packs", "mlflow"):
        if name in local:
            print(f"{name:18} {statistics.median(local[name]):8.2f} s")
    if "mlflow" in local:
        ratio = statistics.median(local["casstore packs"]) / statistics.median(local["mlflow"])
        met = "met" if ratio <= 1.0 else "MISSED"
        judged = f"(goal <= 1.0: {met})" if n >= 10_000 else f"(goal <= 1.0: not judged at {n:,} files)"
        print(f"casstore packs / MLflow = {ratio:.2f} {judged}")
        print(f"casstore loose / MLflow = {statistics.median(local['casstore loose']) / statistics.median(local['mlflow']):.2f} "
              "(a record per artifact, as before)")


if __name__ == "__main__":
    main()
