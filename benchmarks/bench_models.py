"""Models: casstore vs MLflow on a large RandomForest retrained with warm_start.

A RandomForestRegressor of about 200 MB pickled (``--quick``: about 12 MB) is logged
in 5 runs; before each run after the first it is retrained with ``warm_start`` and
10% more trees, so each model keeps every tree of the one before. Measured, side by
side in one process:

- store growth over the 5 runs (casstore's store vs MLflow's sqlite db + artifacts);
  goal: casstore's growth <= 30% of MLflow's;
- time per ``log_model`` call; goal: no slower than MLflow's;
- ``load_model`` of the last model, casstore's verification included; goal: no
  slower than 1.2x MLflow's. Timed twice: ``--repeat`` loads in this process, and
  ``--fresh`` loads each in a new process (a server loading its model once: the
  allocator has not grown a heap yet), its imports done before the clock starts.
  The CPU time of the in-process loads (all threads) is printed beside them.

Both sides use cloudpickle (MLflow's default for sklearn is skops, which needs trusted
types at log time) and their default requirement inference. Timings are medians of
``--repeat`` loads (and of ``--fresh`` processes); each log is timed once per run.

    python benchmarks/bench_models.py [--quick] [--size-mb 200] [--runs 5] [--repeat 3] [--fresh 3]
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import dir_size  # noqa: E402
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


def make_forest(size_mb: float, samples: int, seed: int = 0) -> tuple[Any, np.ndarray, np.ndarray, int]:
    """A warm-startable forest whose pickle is about ``size_mb``; returns it, X, y and its tree count."""
    from sklearn.ensemble import RandomForestRegressor

    rng = np.random.default_rng(seed)
    X = rng.random((samples, 10))
    y = X @ rng.random(10) + rng.normal(0, 0.5, samples)
    probe = RandomForestRegressor(n_estimators=4, random_state=seed, n_jobs=2).fit(X, y)
    per_tree = len(pickle.dumps(probe, protocol=5)) / 4
    trees = max(4, int(round(size_mb * 1e6 / per_tree)))
    forest = RandomForestRegressor(n_estimators=trees, warm_start=True, random_state=seed, n_jobs=2)
    return forest.fit(X, y), X, y, trees


def pickle_stability(prev: bytes, cur: bytes) -> str:
    """Where two consecutive pickles differ: a short report."""
    n = min(len(prev), len(cur))
    first = next((i for i in range(n) if prev[i] != cur[i]), n)
    # the common prefix after the first difference (the unchanged trees)
    block = 1 << 16
    same = sum(1 for i in range(0, n - block, block) if prev[i:i + block] == cur[i:i + block])
    return (f"first difference at byte {first:,} (the n_estimators field); "
            f"{same * block / len(prev):.1%} of the previous pickle is byte-identical at the same offset")


def quiet_mlflow() -> None:
    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "true"
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    warnings.filterwarnings("ignore")
    for name in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.ERROR)


# a new process that loads a tiny model (so that each side has set up its store and done
# its lazy imports), then the model, and prints how long the second load took
_FRESH_LOAD = """
import sys, time
who, tiny, uri, tracking = sys.argv[1:5]
import sklearn.ensemble  # the model's own modules, imported as the server would have
if who == "casstore":
    import casstore, casstore.sklearn
    casstore.set_tracking_uri(tracking)
    load = casstore.sklearn.load_model
else:
    import logging, os, warnings
    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "true"
    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    import mlflow, mlflow.sklearn
    mlflow.set_tracking_uri(tracking)
    load = mlflow.sklearn.load_model
load(tiny)
t = time.perf_counter()
model = load(uri)
print(time.perf_counter() - t)
"""


def fresh_load(who: str, tiny: str, uri: str, tracking: str) -> float:
    """Seconds one ``load_model`` of ``uri`` took in a new process (after one of ``tiny``)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", _FRESH_LOAD, who, tiny, uri, tracking], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"the {who} load in a new process failed:\n{out.stderr}")
    return float(out.stdout.split()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small model (about 12 MB), for CI")
    ap.add_argument("--size-mb", type=float, default=None, help="pickled size of the first model (default 200, quick 12)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3, help="load_model repetitions (median)")
    ap.add_argument("--fresh", type=int, default=3, help="loads each in a new process (median; 0: none)")
    ap.add_argument("--workdir", type=Path, default=None, help="where the two stores go (default: a temp dir)")
    args = ap.parse_args()
    size_mb = args.size_mb or (12.0 if args.quick else 200.0)
    samples = 3000 if args.quick else 20000

    try:
        import mlflow
        import mlflow.sklearn
    except ImportError:
        print("MLflow is not installed: pip install 'casstore[bench]'", file=sys.stderr)
        return 2
    quiet_mlflow()
    import casstore
    import casstore.sklearn

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-models-"))
    work.mkdir(parents=True, exist_ok=True)
    cas_dir, ml_dir = work / "casstore", work / "mlflow"
    for d in (cas_dir, ml_dir):
        shutil.rmtree(d, ignore_errors=True)
    ml_dir.mkdir()
    casstore.set_tracking_uri(str(cas_dir))
    mlflow.set_tracking_uri(f"sqlite:///{ml_dir}/mlflow.db")
    exp = mlflow.create_experiment("bench-models", artifact_location=(ml_dir / "artifacts").as_uri())
    mlflow.set_experiment(experiment_id=exp)

    t0 = time.perf_counter()
    forest, X, y, trees = make_forest(size_mb, samples)
    print(f"# bench_models: {trees} trees, {samples} samples, first pickle {mb(len(pickle.dumps(forest, protocol=5)))}, "
          f"built in {time.perf_counter() - t0:.1f}s; stores in {work}")

    cas0, ml0 = dir_size(cas_dir), dir_size(ml_dir)
    rows = []
    prev_pickle: bytes | None = None
    cas_uri = ml_uri = ""
    for k in range(args.runs):
        if k:
            forest.set_params(n_estimators=int(round(forest.n_estimators * 1.1)))
            forest.fit(X, y)
        import cloudpickle

        cur = cloudpickle.dumps(forest)
        if prev_pickle is not None:
            print(f"  run {k + 1}: pickle {mb(len(cur))}; {pickle_stability(prev_pickle, cur)}")
        prev_pickle = cur
        # alternate who goes first, so neither always meets a cold or a warm page cache
        order = ["casstore", "mlflow"] if k % 2 == 0 else ["mlflow", "casstore"]
        times: dict[str, float] = {}
        for who in order:
            if who == "casstore":
                with casstore.start_run():
                    t = time.perf_counter()
                    info = casstore.sklearn.log_model(forest, name="model")
                    times[who] = time.perf_counter() - t
                cas_uri = info.model_uri
            else:
                with mlflow.start_run():
                    t = time.perf_counter()
                    minfo = mlflow.sklearn.log_model(forest, name="model", serialization_format="cloudpickle")
                    times[who] = time.perf_counter() - t
                ml_uri = minfo.model_uri
        rows.append((k + 1, forest.n_estimators, len(cur), times["casstore"], times["mlflow"],
                     dir_size(cas_dir) - cas0, dir_size(ml_dir) - ml0))

    print()
    print("| run | trees | pickle | casstore log | MLflow log | ratio | casstore growth | MLflow growth |")
    print("|---|---|---|---|---|---|---|---|")
    for r, n, size, tc, tm, gc, gm in rows:
        print(f"| {r} | {n} | {mb(size)} | {tc:.2f} s | {tm:.2f} s | {tc / tm:.2f} | {mb(gc)} | {mb(gm)} |")
    cas_growth, ml_growth = rows[-1][5], rows[-1][6]
    log_c = statistics.median(r[3] for r in rows)
    log_m = statistics.median(r[4] for r in rows)

    loads: dict[str, list[float]] = {"casstore": [], "mlflow": []}
    cpu: dict[str, list[float]] = {"casstore": [], "mlflow": []}  # CPU seconds of all threads
    for i in range(args.repeat):
        for who in (["casstore", "mlflow"] if i % 2 == 0 else ["mlflow", "casstore"]):
            t, c = time.perf_counter(), time.process_time()
            m = casstore.sklearn.load_model(cas_uri) if who == "casstore" else mlflow.sklearn.load_model(ml_uri)
            loads[who].append(time.perf_counter() - t)
            cpu[who].append(time.process_time() - c)
            assert m.n_estimators == forest.n_estimators
            del m
    load_c, load_m = statistics.median(loads["casstore"]), statistics.median(loads["mlflow"])
    fresh: dict[str, list[float]] = {"casstore": [], "mlflow": []}
    if args.fresh:
        from sklearn.tree import DecisionTreeRegressor

        tiny = DecisionTreeRegressor(max_depth=2).fit(X, y)
        with casstore.start_run():
            cas_tiny = casstore.sklearn.log_model(tiny, name="tiny").model_uri
        with mlflow.start_run():
            ml_tiny = mlflow.sklearn.log_model(tiny, name="tiny", serialization_format="cloudpickle").model_uri
        targets = {"casstore": (cas_tiny, cas_uri, str(cas_dir)), "mlflow": (ml_tiny, ml_uri, f"sqlite:///{ml_dir}/mlflow.db")}
    for i in range(args.fresh):
        for who in (["casstore", "mlflow"] if i % 2 == 0 else ["mlflow", "casstore"]):
            fresh[who].append(fresh_load(who, *targets[who]))

    print()
    growth_ratio = cas_growth / ml_growth
    checks = [
        ("store growth over the runs", f"{mb(cas_growth)} vs {mb(ml_growth)}", growth_ratio, 0.30),
        ("log_model time (median per run)", f"{log_c:.2f} s vs {log_m:.2f} s", log_c / log_m, 1.0),
        ("load_model of the last model (median)", f"{load_c:.2f} s vs {load_m:.2f} s", load_c / load_m, 1.2),
    ]
    if args.fresh:
        fresh_c, fresh_m = statistics.median(fresh["casstore"]), statistics.median(fresh["mlflow"])
        checks.append(("load_model in a new process (median)", f"{fresh_c:.2f} s vs {fresh_m:.2f} s", fresh_c / fresh_m, 1.2))
    print("| measure | casstore vs MLflow | ratio | goal | met |")
    print("|---|---|---|---|---|")
    ok = True
    judged = size_mb >= 100  # the goals are set for a 200 MB model (below)
    for what, figures, ratio, goal in checks:
        met = ratio <= goal
        ok &= met
        verdict = ("yes" if met else "NO") if judged else f"not judged at {size_mb:g} MB"
        print(f"| {what} | {figures} | {ratio:.2f} | <= {goal:.2f} | {verdict} |")
    print(f"\nload times: casstore {', '.join(f'{t:.2f}' for t in loads['casstore'])} s; "
          f"MLflow {', '.join(f'{t:.2f}' for t in loads['mlflow'])} s")
    cpu_c, cpu_m = statistics.median(cpu["casstore"]), statistics.median(cpu["mlflow"])
    # the work a load does, whatever else the machine runs: a verified load reads and hashes
    # the file before unpickling, so its wall-clock ratio nears this one when no core is free
    print(f"CPU time per load (median, all threads): casstore {cpu_c:.2f} s, MLflow {cpu_m:.2f} s, ratio {cpu_c / cpu_m:.2f}")
    if args.fresh:
        print(f"in new processes: casstore {', '.join(f'{t:.2f}' for t in fresh['casstore'])} s; "
              f"MLflow {', '.join(f'{t:.2f}' for t in fresh['mlflow'])} s")
    if size_mb < 100:
        # a small model pays a fixed cost per run (the chunk holding the changed header, the
        # chunk at the old end) that a 200 MB model does not notice
        print(f"(the goals are set for a 200 MB model; at {size_mb:g} MB the fixed cost per run weighs more)")
    if judged:
        print("all goals met" if ok else "some goals NOT met (see the table)")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
