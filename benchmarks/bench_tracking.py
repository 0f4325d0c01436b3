"""Tracking: casstore vs MLflow 3.x on artifact and metric logging, side by side in one run.

MLflow runs with a sqlite backend (``sqlite:///<dir>/mlflow.db``) and artifacts in a
local directory; casstore with a local store. Three measurements, each repeated
``--repeat`` times on fresh stores (casstore and MLflow alternate who goes first);
medians are printed with the ratio casstore / MLflow:

1. ``log_artifacts`` of a directory of 10,000 files of 4 KiB (``--quick``: 1,000).
   Goal: casstore <= 1.5x MLflow's time. casstore hashes each file, stores it and
   binds it with a crash-safe record, with one durability barrier for the batch;
   it is also shown with the barrier off (``CASSTORE_DURABLE=0``). The seal
   (``end_run``) is timed apart.
2. Re-logging, in a new run, a 256 MiB file (``--quick``: 32 MiB) that differs from
   one logged earlier in 1 MiB. Goal: >= 4x faster than MLflow's ``log_artifact``;
   casstore's store grows by < 5% of the file (MLflow's by 100%).
3. 10,000 ``log_metric`` calls (``--quick``: 1,000), then ``end_run``.
   Goal: no slower than MLflow.
4. 1,500 ``log_param`` calls into one run (``--quick``: 300), each a batch record. A
   logging call folds only the batches it has not folded yet; shown beside the same
   calls refolding every batch of the run each time, which is what the incremental
   fold must beat to be kept.

The goals are set for the full sizes; ``--quick`` prints its figures without judging them.

    python benchmarks/bench_tracking.py [--quick] [--repeat 3] [--only artifacts,relog,metrics,params]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import blake3_file, dir_size, discard, scratch  # noqa: E402
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def quiet_mlflow() -> Any:
    warnings.filterwarnings("ignore")
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    for name in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import mlflow
    except ImportError:
        sys.exit("MLflow is needed for this benchmark: pip install 'casstore[bench]' (or pip install 'mlflow>=3.0')")
    return mlflow


class Side:
    """One tool's store in its own directory, with a run open for each measurement."""

    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        self.root = root
        root.mkdir(parents=True)


class Casstore(Side):
    def __init__(self, root: Path, durable: bool = True, layout: str = "loose") -> None:
        name = "casstore" if durable else "casstore (no barrier)"
        super().__init__(name if layout == "loose" else f"{name} ({layout})", root)
        import casstore
        from casstore.objects import LAYOUT_ENV
        from casstore.tracking import fluent

        os.environ["CASSTORE_DURABLE"] = "1" if durable else "0"
        os.environ[LAYOUT_ENV] = layout  # the layout of the new store
        fluent._reset()
        self.m = casstore
        casstore.set_tracking_uri(str(root / "store"))
        casstore.set_experiment("bench")

    def store_size(self) -> int:
        return dir_size(self.root / "store")


def Refolding(root: Path) -> Casstore:
    """casstore made to refold every batch of the run on each logging call."""
    side = Casstore(root)
    side.name = "casstore (refold each call)"
    return side


def Packed(root: Path) -> Casstore:
    """casstore on a new store of the packs layout."""
    return Casstore(root, layout="packs")


class Mlflow(Side):
    def __init__(self, root: Path) -> None:
        super().__init__("mlflow", root)
        self.m = mlflow = quiet_mlflow()
        mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
        exp = mlflow.create_experiment("bench", artifact_location=(root / "mlartifacts").as_uri())
        mlflow.set_experiment(experiment_id=exp)

    def store_size(self) -> int:
        return dir_size(self.root / "mlartifacts")


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def make_small_files(d: Path, n: int, size: int) -> None:
    for i in range(n):
        sub = d / f"part{i // 1000:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"file{i:05d}.bin").write_bytes(os.urandom(size))


def alternate(work: Path, repeat: int, makers: list[Callable[[Path], Side]],
              measure: Callable[[Side], dict[str, float]]) -> list[dict[str, Any]]:
    """Run ``measure`` on a fresh store of each side, ``repeat`` times, alternating who goes
    first; return the median of each field per side."""
    out: dict[str, dict[str, list[float]]] = {}
    for r in range(repeat):
        for make in makers if r % 2 == 0 else makers[::-1]:
            side = make(work / f"side-{time.monotonic_ns()}")
            for field, value in measure(side).items():
                out.setdefault(side.name, {}).setdefault(field, []).append(value)
            discard(side.root)  # deleted at the end (see _common.discard)
    return [{"tool": k, **{f: statistics.median(v) for f, v in res.items()}} for k, res in out.items()]


def bench_log_artifacts(work: Path, n: int, repeat: int) -> list[dict[str, Any]]:
    src = work / "small"
    make_small_files(src, n, 4096)

    def measure(side: Side) -> dict[str, float]:
        m = side.m
        m.start_run()
        t_log = timed(lambda: m.log_artifacts(str(src), "data"))
        return {"log": t_log, "end": timed(m.end_run)}

    return alternate(work, repeat, [Casstore, lambda p: Casstore(p, durable=False), Packed, Mlflow], measure)


def bench_relog(work: Path, size: int, repeat: int) -> list[dict[str, Any]]:
    import numpy as np

    a = work / "a" / "model.bin"
    b = work / "b" / "model.bin"
    a.parent.mkdir()
    b.parent.mkdir()
    data = bytearray(np.random.default_rng(1).integers(0, 256, size, dtype=np.uint8).tobytes())
    a.write_bytes(data)
    mid = size // 2
    data[mid:mid + (1 << 20)] = os.urandom(1 << 20)
    b.write_bytes(data)
    del data

    def measure(side: Side) -> dict[str, float]:
        m = side.m
        with m.start_run():
            m.log_artifact(str(a), "model")
        before = side.store_size()
        # the floor, timed beside each re-log: the new version's digest is the BLAKE3 of
        # all of it, so any store that names content by its b3sum reads and hashes the
        # whole file at least once
        floor = timed(lambda: blake3_file(b))
        with m.start_run():
            t = timed(lambda: m.log_artifact(str(b), "model"))
        return {"relog": t, "growth": side.store_size() - before, "floor": floor}

    rows = alternate(work, repeat, [Casstore, Packed, Mlflow], measure)
    rows.append({"tool": "one BLAKE3 pass (floor)", "relog": statistics.median(r.pop("floor") for r in rows), "growth": 0})
    return rows


def bench_metrics(work: Path, n: int, repeat: int) -> list[dict[str, Any]]:
    def measure(side: Side) -> dict[str, float]:
        m = side.m
        m.start_run()

        def log() -> None:
            for i in range(n):
                m.log_metric("loss", 1.0 / (i + 1), step=i)

        t_log = timed(log)
        return {"log": t_log, "end": timed(m.end_run)}

    return alternate(work, repeat, [Casstore, Mlflow], measure)


def bench_params(work: Path, n: int, repeat: int) -> list[dict[str, Any]]:
    from casstore.runs.handle import RunHandle

    incremental = RunHandle._sync_batches

    def refolding(self: RunHandle, keys: Any) -> Any:
        self._folded = None  # forget the fold: every batch listed is folded again
        return incremental(self, keys)

    def measure(side: Side) -> dict[str, float]:
        m = side.m
        m.start_run()
        RunHandle._sync_batches = refolding if side.name.endswith("(refold each call)") else incremental  # type: ignore[method-assign]
        try:
            t_log = timed(lambda: [m.log_param(f"p{i}", i) for i in range(n)])
        finally:
            RunHandle._sync_batches = incremental  # type: ignore[method-assign]
        return {"log": t_log, "end": timed(m.end_run)}

    return alternate(work, repeat, [Casstore, Refolding, Mlflow], measure)


def ratio(rows: list[dict[str, Any]], tool: str, field: str, base: str = "mlflow") -> float:
    by = {r["tool"]: r for r in rows}
    return float(by[tool][field] / by[base][field])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (CI)")
    ap.add_argument("--repeat", type=int, default=None, help="repetitions per measurement (default 3, quick 1)")
    ap.add_argument("--only", default="artifacts,relog,metrics,params")
    ap.add_argument("--workdir", default=None, help="where to create the stores (default: a temp dir)")
    args = ap.parse_args()
    repeat = args.repeat or (1 if args.quick else 3)
    files = 1000 if args.quick else 10_000
    size = (32 if args.quick else 256) << 20
    points = 1000 if args.quick else 10_000
    params = 300 if args.quick else 1500
    quiet_mlflow()
    only = set(args.only.split(","))
    with scratch("bench-tracking-", args.workdir) as work:
        print(f"bench_tracking: {'quick' if args.quick else 'full'} sizes, medians of {repeat}, workdir {work}")
        if "artifacts" in only:
            rows = bench_log_artifacts(work, files, repeat)
            print(f"\n1. log_artifacts of {files:,} files of 4 KiB (end_run timed apart)")
            for r in rows:
                print(f"   {r['tool']:<24} log_artifacts {r['log']:7.3f} s   end_run {r['end']:6.3f} s")
            r = ratio(rows, 'casstore', 'log')
            print(f"   ratio casstore/mlflow: {r:.2f}x (goal <= 1.5x: {verdict(r <= 1.5, args.quick)}); "
                  f"without the durability barrier {ratio(rows, 'casstore (no barrier)', 'log'):.2f}x; "
                  f"packs layout {ratio(rows, 'casstore (packs)', 'log'):.2f}x")
        if "relog" in only:
            rows = bench_relog(work, size, repeat)
            print(f"\n2. re-log of a {size >> 20} MiB file that differs from an earlier one in 1 MiB")
            for r in rows[:-1]:
                print(f"   {r['tool']:<24} log_artifact {r['relog']:7.3f} s   store growth {r['growth'] / 2**20:8.2f} MiB "
                      f"({100 * r['growth'] / size:5.1f}% of the file)")
            print(f"   {rows[-1]['tool']:<24} b3sum        {rows[-1]['relog']:7.3f} s   (every core; the file in the page cache)")
            speedup = 1 / ratio(rows, 'casstore', 'relog')
            growth = 100 * [r for r in rows if r['tool'] == 'casstore'][0]['growth'] / size
            print(f"   speed-up over mlflow: {speedup:.2f}x (goal >= 4x: {verdict(speedup >= 4, args.quick)})")
            print(f"   casstore store growth: {growth:.2f}% of the file (goal < 5%: {verdict(growth < 5, args.quick)})")
            print(f"   the most any store naming content by BLAKE3 could reach: "
                  f"{1 / ratio(rows, 'one BLAKE3 pass (floor)', 'relog'):.2f}x (MLflow's time / one BLAKE3 pass); "
                  f"casstore takes {ratio(rows, 'casstore', 'relog', 'one BLAKE3 pass (floor)'):.2f}x that pass (goal <= 2x: "
                  f"{verdict(ratio(rows, 'casstore', 'relog', 'one BLAKE3 pass (floor)') <= 2, args.quick)}), "
                  f"the packs layout {ratio(rows, 'casstore (packs)', 'relog', 'one BLAKE3 pass (floor)'):.2f}x")
        if "metrics" in only:
            rows = bench_metrics(work, points, repeat)
            print(f"\n3. {points:,} log_metric calls, then end_run")
            for r in rows:
                print(f"   {r['tool']:<24} log_metric x{points} {r['log']:7.3f} s   end_run {r['end']:6.3f} s")
            r = ratio(rows, 'casstore', 'log')
            print(f"   ratio casstore/mlflow: {r:.4f}x for the calls (goal <= 1x: {verdict(r <= 1, args.quick)})")
        if "params" in only:
            rows = bench_params(work, params, repeat)
            print(f"\n4. {params:,} log_param calls into one run, then end_run")
            for r in rows:
                print(f"   {r['tool']:<28} log_param x{params} {r['log']:7.3f} s   end_run {r['end']:6.3f} s")
            gain = ratio(rows, 'casstore (refold each call)', 'log', 'casstore')
            print(f"   ratio casstore/mlflow: {ratio(rows, 'casstore', 'log'):.2f}x; the incremental fold is "
                  f"{gain:.2f}x faster than refolding each call (kept only while > 1x: {verdict(gain > 1, quick=False)})")


def verdict(met: bool, quick: bool) -> str:
    """A goal's verdict: judged at the full sizes alone, for which the goals are set."""
    if quick:
        return "not judged at the quick sizes; the goal is set for the full ones"
    return "met" if met else "MISSED"


if __name__ == "__main__":
    main()
