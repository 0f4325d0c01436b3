"""Runs at team scale: creating, searching and reading runs, casstore against MLflow 3 on sqlite.

Every run has 20 params, 10 metrics and 2 tags (plus the tags each tool sets itself),
logged as a user does: ``start_run``, ``log_params``, ``log_metrics``, ``set_tags``,
``end_run``. Four parts, in one script run:

1. **Local**, ``--runs`` runs (default 10,000; ``--quick`` 300) in each tool, created in
   alternating blocks of 250 so both see the same machine: the time per run, the disk
   used (allocated blocks, and the bytes of the files), also for a store of format
   version 3 (casstore before batch records), then ``get_run`` and a filtered,
   ordered search of 100 results (``metrics.m0 > 0.5 AND params.p3 = 'v1'``, ordered by
   ``metrics.m1 DESC``), each repeated and interleaved; casstore's search cold (a new
   cache) and warm. Goals: search at most MLflow's time; creation no slower than version 3;
   disk at most 2x MLflow's.
2. **S3**, moto's S3 server and SeaweedFS (``--s3-servers``; ``--quick``: moto only) on
   loopback behind a counting proxy, with ``--s3-runs`` runs
   (default 1,000 and 10,000; ``--quick`` 200): the requests and time of creating a run,
   over its first 200 runs one at a time (goal at most 10 requests; the rest are created by
   8 threads), of ``get_run`` (at most 3), of the same filtered search cold and warm (warm
   at most 20 requests and 1 s, cold at most 5 s, at 10,000 runs). moto counts requests
   exactly; SeaweedFS, a separate S3 implementation with storage of its own, gives times
   closer to a real server's.
   MLflow has no S3 tracking store; its local sqlite times from part 1 are the reference.
3. **Index growth**: a synthetic store of ``--synthetic`` run summaries (default
   1,000,000; ``--quick`` 20,000) published by 20 writers as casstore's writers do (a
   segment of a second's runs each, merged by level), then read by a new reader: how
   many segments there are and their bytes as runs grow, what publishing and merging
   cost per run, how long a cold reader takes to merge them and to answer a search.

    python benchmarks/bench_search.py [--quick] [--runs N] [--s3-runs N,N] [--s3-servers moto,seaweedfs]
                                      [--synthetic N] [--only local,s3,growth]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH.parent / "tests"))
from _common import discard, scratch  # noqa: E402

FILTER = "metrics.m0 > 0.5 AND params.p3 = 'v1'"
ORDER = ["metrics.m1 DESC"]
BLOCK = 250


def quiet_mlflow() -> Any:
    warnings.filterwarnings("ignore")
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    for name in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import mlflow

    return mlflow


def run_values(i: int) -> tuple[dict[str, str], dict[str, float], dict[str, str]]:
    rng = random.Random(i)
    params = {f"p{k}": f"v{rng.randrange(4)}" for k in range(20)}
    metrics = {f"m{k}": rng.random() for k in range(10)}
    tags = {"team": rng.choice(["vision", "nlp"]), "owner": f"user{rng.randrange(20)}"}
    return params, metrics, tags


def make_run(m: Any, i: int) -> None:
    params, metrics, tags = run_values(i)
    with m.start_run():
        m.log_params(params)
        m.log_metrics(metrics)
        m.set_tags(tags)


def du(path: Path) -> tuple[int, int]:
    """(allocated bytes, file bytes) under ``path``."""
    blocks = size = 0
    for dirpath, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            st = os.lstat(os.path.join(dirpath, name))
            blocks += st.st_blocks * 512
            if name in files:
                size += st.st_size
    return blocks, size


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def say(text: str) -> None:
    print(text, flush=True)


def verdict(ok: bool, goal: str) -> str:
    return f"(goal {goal}: {'met' if ok else 'MISSED'})"


# ---- 1. local ------------------------------------------------------------------------------------------


def part_local(work: Path, n: int, repeat: int) -> dict[str, float]:
    import casstore
    from casstore.tracking import fluent

    mlflow = quiet_mlflow()
    from casstore.objects.config import CONFIG_KEY, StoreConfig

    cas_root, v3_root, ml_root = work / "casstore", work / "casstore-v3", work / "mlflow"
    ml_root.mkdir(parents=True)
    (v3_root / "store").mkdir(parents=True)  # a store of format version 3: casstore before batch records
    (v3_root / "store" / CONFIG_KEY).write_bytes(StoreConfig(version=3).to_json())
    fluent._reset()
    mlflow.set_tracking_uri(f"sqlite:///{ml_root}/mlflow.db")
    mlflow.set_experiment(experiment_id=mlflow.create_experiment("bench", artifact_location=(ml_root / "art").as_uri()))

    def use(root: Path) -> Any:
        casstore.set_tracking_uri(str(root / "store"))
        casstore.set_experiment("bench")
        return casstore

    sides: list[tuple[str, Callable[[], Any]]] = [
        ("casstore", lambda: use(cas_root)), ("casstore v3", lambda: use(v3_root)), ("mlflow", lambda: mlflow)]
    t = {name: 0.0 for name, _ in sides}
    for start in range(0, n, BLOCK):
        k = (start // BLOCK) % len(sides)
        for name, pick in sides[k:] + sides[:k]:
            m = pick()
            t[name] += timed(lambda: [make_run(m, i) for i in range(start, min(n, start + BLOCK))])
        print(f"   created {min(n, start + BLOCK):,} runs in each", end="\r", flush=True)
    print()
    use(cas_root)
    per = {k: v / n * 1000 for k, v in t.items()}
    print(f"\n1. local, {n:,} runs of 20 params, 10 metrics, 2 tags")
    print(f"   create a run     casstore {per['casstore']:7.2f} ms   casstore v3 {per['casstore v3']:7.2f} ms   "
          f"mlflow {per['mlflow']:7.2f} ms   ratio {per['casstore'] / per['mlflow']:.2f}x "
          f"(v3 {per['casstore v3'] / per['mlflow']:.2f}x) "
          f"{verdict(per['casstore'] <= per['casstore v3'] * 1.05, 'no slower than version 3, within 5%')}")
    cas_disk, v3_disk, ml_disk = du(cas_root), du(v3_root), du(ml_root)
    print(f"   disk             casstore {cas_disk[0] / 2**20:7.1f} MiB ({cas_disk[1] / 2**20:.1f} MiB in files)   "
          f"casstore v3 {v3_disk[0] / 2**20:7.1f} MiB ({v3_disk[1] / 2**20:.1f} MiB in files)   "
          f"mlflow {ml_disk[0] / 2**20:7.1f} MiB ({ml_disk[1] / 2**20:.1f} MiB in files)   ratio "
          f"{cas_disk[0] / ml_disk[0]:.2f}x {verdict(cas_disk[0] <= 2 * ml_disk[0], '<= 2x')}")
    cas_ids = [r.info.run_id for r in casstore.search_runs(output_format="list", max_results=50)]
    ml_ids = list(mlflow.search_runs(max_results=50)["run_id"])
    res: dict[str, list[float]] = {}
    client = casstore.MlflowClient()
    store = client.store
    for r in range(repeat):
        store.index.clear()
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("casstore search cold", lambda: client.search_runs(["0", *_exp_ids(client)], FILTER, max_results=100,
                                                                 order_by=ORDER)),
            ("casstore search warm", lambda: client.search_runs(["0", *_exp_ids(client)], FILTER, max_results=100,
                                                                 order_by=ORDER)),
            ("mlflow search", lambda: mlflow.search_runs(filter_string=FILTER, max_results=100, order_by=ORDER)),
            ("casstore get_run", lambda: [client.get_run(i) for i in cas_ids]),
            ("mlflow get_run", lambda: [mlflow.get_run(i) for i in ml_ids]),
        ]
        for name, fn in steps if r % 2 == 0 else steps[:2] + steps[2:][::-1]:
            res.setdefault(name, []).append(timed(fn))
    med = {k: statistics.median(v) for k, v in res.items()}
    got = len(client.search_runs(_exp_ids(client), FILTER, max_results=100, order_by=ORDER))
    print(f"   search of {got} results, filtered and ordered: casstore warm {med['casstore search warm'] * 1000:7.1f} ms, "
          f"cold {med['casstore search cold'] * 1000:7.1f} ms   mlflow {med['mlflow search'] * 1000:7.1f} ms   ratio "
          f"{med['casstore search warm'] / med['mlflow search']:.2f}x warm, "
          f"{med['casstore search cold'] / med['mlflow search']:.2f}x cold "
          f"{verdict(med['casstore search warm'] <= med['mlflow search'], '<= 1x')}")
    print(f"   get_run          casstore {med['casstore get_run'] / len(cas_ids) * 1000:7.2f} ms   "
          f"mlflow {med['mlflow get_run'] / len(ml_ids) * 1000:7.2f} ms")
    return {"mlflow_create_ms": per["mlflow"], "mlflow_search_ms": med["mlflow search"] * 1000}


def _exp_ids(client: Any) -> list[str]:
    return [e.experiment_id for e in client.search_experiments()]


# ---- 2. S3 -----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def s3_server(name: str) -> Iterator[tuple[str, str]]:
    """An S3 server on loopback with a bucket: ``moto`` or ``seaweedfs``; yields (endpoint, bucket)."""
    from s3_server import DUMMY_CREDENTIALS, LoopbackS3, make_bucket

    saved = dict(os.environ)
    try:
        if name == "moto":
            os.environ.update(DUMMY_CREDENTIALS)
            with LoopbackS3() as server:
                make_bucket(server.endpoint_url, "bench")
                yield server.endpoint_url, "bench"
            return
        from seaweed import SeaweedS3

        with SeaweedS3() as weed:
            os.environ.update(weed.env())
            yield weed.endpoint_url, weed.make_bucket("bench")
    finally:
        os.environ.clear()
        os.environ.update(saved)


def part_s3(n_runs: list[int], ref: dict[str, float] | None, server_name: str) -> None:
    from s3_server import FaultProxy

    from casstore.runs import index
    from casstore.tracking.client import Client
    from casstore.tracking.entities import Metric, Param, RunTag

    say(f"\n2. S3 ({server_name}'s server on loopback, requests counted by a proxy)")
    with s3_server(server_name) as (endpoint, bucket), FaultProxy(endpoint) as proxy:
        opts = {"endpoint_url": proxy.endpoint_url}
        for n in n_runs:
            c = Client(f"s3://{bucket}/{server_name}-runs-{n}", storage_options=opts)
            exp = c.create_experiment("bench")
            c.store.backend.put_if_absent("warm", b"")  # this process's probe
            counts, times = [], []
            t_all = time.perf_counter()

            def one(cl: Any, i: int) -> str:
                params, metrics, tags = run_values(i)
                run_id = cl.create_run(exp).info.run_id
                cl.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
                for k, v in metrics.items():
                    cl.log_metric(run_id, k, v)
                cl.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
                cl.set_terminated(run_id)
                return str(run_id)

            sample = min(n, 200)  # timed and counted one at a time; the rest by 8 writers at once
            for i in range(sample):
                before, t0 = proxy.count(), time.perf_counter()
                run_id = one(c, i)
                times.append(time.perf_counter() - t0)
                counts.append(proxy.count() - before)
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda i: one(c, i), range(sample, n)))
            index.flush_pending()
            total = time.perf_counter() - t_all
            reqs = statistics.median(counts)
            mean_reqs = sum(counts) / len(counts)
            say(f"   {n:>6,} runs: create a run {statistics.median(times) * 1000:6.1f} ms, {reqs:.0f} requests "
                  f"(mean {mean_reqs:.2f} with the index's publishing and merging) "
                  f"{verdict(reqs <= 10, '<= 10 requests')}"
                  + (f"; mlflow local {ref['mlflow_create_ms']:.1f} ms" if ref else ""))
            proxy.reset_counts()
            c.get_run(run_id)
            say(f"   {n:>6,} runs: get_run {proxy.count()} requests {verdict(proxy.count() <= 3, '<= 3 requests')}")
            for label in ("cold", "warm"):
                reader = Client(f"s3://{bucket}/{server_name}-runs-{n}", storage_options=opts)
                if label == "cold":
                    reader.store.index.clear()
                else:
                    reader.search_runs([exp], FILTER, max_results=100, order_by=ORDER)
                proxy.reset_counts()
                t = timed(lambda: reader.search_runs([exp], FILTER, max_results=100, order_by=ORDER))
                # warm: at most 20 requests and 1 s; cold: at most 5 s (at 10,000 runs)
                limit = 1.0 if label == "warm" else 5.0
                judged = f"{'<= 20 requests, ' if label == 'warm' else ''}<= {limit:.0f} s at 10,000 runs"
                ok = (proxy.count() <= 20 or label == "cold") and (t <= limit or n < 10_000)
                say(f"   {n:>6,} runs: filtered search, {label} cache: {t * 1000:7.0f} ms, {proxy.count()} requests "
                      f"{verdict(ok, judged)}" + (f"; mlflow local {ref['mlflow_search_ms']:.0f} ms" if ref else ""))
            say(f"   {n:>6,} runs: created in {total:.0f} s; the index has {len(list(c.store.backend.list('index/')))} "
                  "segments")
            delete_prefix(c.store.backend, "")  # the next size starts from an empty server


# ---- 3. growth -------------------------------------------------------------------------------------------------


def delete_prefix(backend: Any, prefix: str) -> None:
    keys = list(backend.list(prefix))
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(backend.delete, keys))


def part_growth(work: Path, n: int) -> None:
    from casstore.objects.codec import pack_checked
    from casstore.runs import index, open_run_store, search
    from casstore.runs.layout import new_run_id

    print(f"\n3. index growth: {n:,} synthetic run summaries from 20 writers (5 params, 5 metrics, 2 tags each)")
    store = open_run_store(work / "synthetic")
    backend = store.backend
    writers = 20
    per_segment = 50  # the runs one writer ends in a second, at a busy time
    milestones = {m for m in (10**k for k in range(3, 8)) if m <= n} | {n}
    rng = random.Random(1)
    published = 0
    t_pub = 0.0
    requests = 0
    while published < n:
        w = published // per_segment % writers
        batch = []
        for _ in range(min(per_segment, n - published)):
            i = published + len(batch)
            batch.append({"run_id": new_run_id(), "experiment_id": "0", "run_name": f"w{w}-{i}", "status": "FINISHED",
                          "start_time": i, "end_time": i + 1, "digest": f"{i:064x}", "deleted": False,
                          "params": {f"p{k}": f"v{rng.randrange(4)}" for k in range(5)},
                          "tags": {"team": "a", "writer": f"w{w}"},
                          "metrics": {f"m{k}": rng.random() for k in range(5)}, "models": {}, "artifacts": [0, 0]})
        t0 = time.perf_counter()
        backend.put_if_absent(index.segment_key(0), pack_checked({"v": 1, "level": 0, "runs": batch}))
        requests += 1
        if rng.randrange(index.COMPACT_EVERY) == 0:  # as index.publish does
            merged = index.compact(store)
            requests += 1 + (2 * merged + 1 if merged else 0)  # a listing; each merged read and deleted, one written
        t_pub += time.perf_counter() - t0
        published += len(batch)
        if published in milestones:
            keys = list(backend.list(index.INDEX_PREFIX))
            size = sum(backend.info(k).size for k in keys)
            say(f"   {published:>9,} runs: {len(keys):3d} segments, {size / 2**20:8.1f} MiB "
                  f"({size / published:.0f} B a run); publishing and merging so far {t_pub:6.1f} s, "
                  f"{requests / published:.3f} requests a run")
    reader = open_run_store(work / "synthetic")
    reader.index.clear()
    run_ids = sorted({s["run_id"] for k in backend.list(index.INDEX_PREFIX)
                      for s in index.decode_segment(backend.get(k), k)})
    t_cold = timed(lambda: reader.index.refresh(run_ids))
    flt, order = search.parse_filter(FILTER), search.parse_order_by(ORDER)
    db_conn = reader.index._connect()  # the SQL alone: synthetic runs have no seal to check a result against
    t_q = statistics.median(timed(lambda: reader.index._query(db_conn, run_ids, flt, order, False, 100, 0))
                            for _ in range(3))
    db = index._cache_path(reader)
    db_size = sum(os.path.getsize(db + s) for s in ("", "-wal") if db and os.path.exists(db + s))
    print(f"   a new reader merges them in {t_cold:.1f} s (a local SQLite cache of {db_size / 2**20:.0f} MiB); "
          f"then a filtered, ordered search of 100 takes {t_q * 1000:.0f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--s3-runs", default=None)
    ap.add_argument("--s3-servers", default=None, help="moto,seaweedfs (default; --quick: moto)")
    ap.add_argument("--synthetic", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", default="local,s3,growth")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    n = args.runs or (300 if args.quick else 10_000)
    s3 = [int(x) for x in (args.s3_runs or ("200" if args.quick else "1000,10000")).split(",")]
    synthetic = args.synthetic or (20_000 if args.quick else 1_000_000)
    only = set(args.only.split(","))
    os.environ.setdefault("CASSTORE_CACHE_DIR", "")
    with scratch("bench-search-", args.workdir) as work:
        if not os.environ["CASSTORE_CACHE_DIR"]:
            os.environ["CASSTORE_CACHE_DIR"] = str(work / "cache")
        print(f"bench_search: {'quick' if args.quick else 'full'} sizes, workdir {work}")
        ref = None
        if "local" in only:
            ref = part_local(work / "local", n, args.repeat)
            discard(work / "local")
        if "s3" in only:
            for server in (args.s3_servers or ("moto" if args.quick else "moto,seaweedfs")).split(","):
                part_s3(s3, ref, server)
        if "growth" in only:
            part_growth(work, synthetic)


if __name__ == "__main__":
    main()
