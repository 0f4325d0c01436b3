"""A team's everyday operations on one shared S3 store: requests and time, old and new way side by side.

One store of the packs layout (what a new store on S3 gets) on a loopback S3 server
(SeaweedFS, ``--server moto`` for moto's), behind a counting proxy (``tests/s3_server.py``),
filled as a team fills it: ``--runs`` runs of 20 params and 10 metrics in one experiment,
written by 8 threads, and ``--models`` runs in another, each logging a model file of
``--model-mib`` MiB with a few regions changed from the run before (each run's writer is a
new process's worth of state: a new store object). The ``Default`` experiment stays empty,
as in most team stores. Each "machine" is a cache directory of its own
(``CASSTORE_CACHE_DIR``); a cold machine has an empty one. Then, each step ``--repeat``
times, the peers taking turns:

- **home page listing** (the UI's home page counts each experiment's runs): every
  experiment listed in full at each view (old: ``RunStore.list_run_ids``) against the
  listing a search makes, of the entries named since this machine's cache last listed the
  experiment (new: ``RunStore.listed_run_ids``), on a warm machine. Goal: the new way at
  most one LIST per experiment, whatever the number of runs.
- **verify --all, re-hashing the chunks**: one GET per chunk (old) against one ranged GET
  per run of adjacent chunks in a pack, up to 16 MiB (new, ``casstore verify``). Goal: at
  most 2 GETs per pack.
- **verify, checking runs** (200 of them): one run after the other (old) against several
  at once (new), the same requests.
- **a new machine's first model load** (the newest model, 64 MiB) reads every index object
  of the packs once: a writer publishes one per run that logs a file (one sweep run in
  four logs a plot of 40 kB), until ``casstore gc`` folds the small ones into few. Before
  gc (old) against after (new): not interleaved, as gc changes the store between them;
  the requests are exact. Goal: at most 64 requests after gc, whatever the number of runs.

And, for information, what everyday operations cost: creating a run, logging a changed
model, ``casstore runs`` (a search of the big experiment) on a new machine and a warm one,
``gc --dry-run``, and the gc that folds the index objects.

    python benchmarks/bench_team.py                    # 1,000 runs, 6 models of 64 MiB, SeaweedFS
    python benchmarks/bench_team.py --quick            # 100 runs, 3 models of 8 MiB
    python benchmarks/bench_team.py --server moto --runs 3000 --models 8 --model-mib 128
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(Path(__file__).resolve().parent)]

from s3_server import DUMMY_CREDENTIALS, FaultProxy, LoopbackS3, make_bucket  # noqa: E402

from casstore.runs import RunStore, open_run_store  # noqa: E402

BUCKET = "casstore-team"
#: runs whose check by verify is timed (each step is repeated: the whole store would take minutes)
VERIFY_RUNS = 200


@contextlib.contextmanager
def server(name: str) -> Iterator[str]:
    """An S3 server on loopback with ``BUCKET``; yields its endpoint."""
    if name == "moto":
        with LoopbackS3() as moto:
            make_bucket(moto.endpoint_url, BUCKET)
            yield moto.endpoint_url
    else:
        from seaweed import SeaweedS3

        with SeaweedS3() as weed:
            weed.make_bucket(BUCKET)
            yield weed.endpoint_url


class Machine:
    """A machine of the team: a cache directory of its own, and the store opened through the proxy."""

    def __init__(self, root: Path, name: str, url: str, endpoint: str) -> None:
        self.cache = root / "machines" / name
        self.url, self.endpoint = url, endpoint

    def store(self) -> RunStore:
        os.environ["CASSTORE_CACHE_DIR"] = str(self.cache)
        return open_run_store(self.url, {"endpoint_url": self.endpoint})


def measured(proxy: FaultProxy, fn: Callable[[], Any]) -> tuple[float, int, Any]:
    """Seconds, requests and the result of ``fn``."""
    proxy.reset_counts()
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, proxy.count(), out


def fill(store: RunStore, runs: int, models: int, model_mib: int, work: Path) -> None:
    """The team's week: many small runs, and a few runs logging a model that changes a little."""
    sweep = store.get_or_create_experiment("sweep")

    def one(i: int) -> None:
        rng = random.Random(i)
        h = store.create_run(sweep, run_name=f"sweep-{i}")
        h.log_batch(params={f"p{k}": f"v{rng.randrange(4)}" for k in range(20)},
                    metrics=[(f"m{k}", rng.random(), 0, None) for k in range(10)])
        if i % 4 == 0:  # a plot, past the size a run record holds inline: stored as a file, in a pack
            h.log_bytes("plots/loss.png", rng.randbytes(40_000))
        h.end()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(runs)))
    model = bytearray(random.Random(0).randbytes(model_mib << 20))
    train = store.get_or_create_experiment("train")
    rng = random.Random(1)
    for i in range(models):
        for _ in range(4):  # fine-tuning: a few regions change
            at = rng.randrange(len(model) - (64 << 10))
            model[at : at + (64 << 10)] = rng.randbytes(64 << 10)
        (work / "model.bin").write_bytes(model)
        h = store.create_run(train, run_name=f"train-{i}")
        h.log_file("model/model.bin", work / "model.bin")
        h.end()


def verify_old(store: RunStore, digests: list[str]) -> None:
    """verify's chunk stage as it was: every chunk read with a request of its own."""
    from casstore.maintenance.verify import _Checker, _workers

    c = _Checker(store, None)
    with ThreadPoolExecutor(_workers(store.backend)) as pool:
        bad = [d for d, r in zip(digests, pool.map(c._hash_chunk, digests)) if r is None or r[0] != d]
    if bad:
        raise SystemExit(f"{len(bad)} chunks did not verify: the benchmark is broken")


def verify_runs_old(store: RunStore, run_ids: list[str]) -> None:
    """verify's check of runs as it was: one run after the other."""
    from casstore.maintenance.verify import _Checker

    c = _Checker(store, None)
    for run_id in run_ids:
        c._check_run(run_id)
    if c.problems:
        raise SystemExit(f"{len(c.problems)} problems: the benchmark is broken")


def verify_runs_new(store: RunStore, run_ids: list[str]) -> None:
    from casstore.maintenance.verify import _Checker

    c = _Checker(store, None)
    c.check_runs(run_ids)
    if c.problems:
        raise SystemExit(f"{len(c.problems)} problems: the benchmark is broken")


def verify_new(store: RunStore, digests: list[str]) -> None:
    from casstore.maintenance.verify import _Checker

    c = _Checker(store, None)
    c.hash_chunks(digests)
    if c.problems:
        raise SystemExit(f"{len(c.problems)} chunks did not verify: the benchmark is broken")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--models", type=int, default=6)
    ap.add_argument("--model-mib", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--server", choices=("seaweedfs", "moto"), default="seaweedfs")
    ap.add_argument("--quick", action="store_true", help="100 runs, 3 models of 8 MiB, 2 repeats")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.models, args.model_mib, args.repeat = 100, 3, 8, 2
    with contextlib.suppress(OSError):
        print(f"load average at the start: {open('/proc/loadavg').read().split()[0]} on {os.cpu_count()} cores", flush=True)
    os.environ.update(DUMMY_CREDENTIALS)
    saved_cache = os.environ.get("CASSTORE_CACHE_DIR")
    with tempfile.TemporaryDirectory(prefix="casstore-bench-team-") as tmp, server(args.server) as endpoint, \
            FaultProxy(endpoint, max_connections=256) as proxy:
        root = Path(tmp)
        os.environ["AWS_ENDPOINT_URL"] = endpoint
        url = f"s3://{BUCKET}/team"
        n = 0

        def machine(name: str | None = None) -> Machine:
            nonlocal n
            n += 1
            return Machine(root, name or f"m{n}", url, proxy.endpoint_url)

        writer = machine("writer")
        t0 = time.perf_counter()
        fill(writer.store(), args.runs, args.models, args.model_mib, root)
        from casstore.runs import index as run_index

        run_index.flush_pending()
        print(f"{args.server}: {args.runs} runs and {args.models} models of {args.model_mib} MiB written in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)

        rows: dict[str, list[tuple[float, int]]] = collections.defaultdict(list)
        browser = machine("browser")
        home = browser.store()
        exps = home.list_experiments()
        [home.listed_run_ids(e.experiment_id) for e in exps]  # the machine has listed them once
        admin = machine("admin").store()
        admin.objects.packs.load()  # type: ignore[union-attr]
        digests = sorted(set(admin.objects.iter_chunks()))
        packs = sum(1 for _ in admin.backend.list("packs/"))
        some_runs = admin.list_run_ids()[:VERIFY_RUNS]
        for _ in range(args.repeat):
            for name, fn in (
                ("home listing, old: every entry", lambda: [len(home.list_run_ids(e.experiment_id)) for e in exps]),
                ("home listing, new: entries since", lambda: [len(home.listed_run_ids(e.experiment_id)) for e in exps]),
                ("verify chunks, old: GET per chunk", lambda: verify_old(admin, digests)),
                ("verify chunks, new: ranged runs", lambda: verify_new(admin, digests)),
                (f"verify {len(some_runs)} runs, old: one by one", lambda: verify_runs_old(admin, some_runs)),
                (f"verify {len(some_runs)} runs, new: at once", lambda: verify_runs_new(admin, some_runs)),
            ):
                s, r, _ = measured(proxy, fn)
                rows[name].append((s, r))
        old_counts = [len(home.list_run_ids(e.experiment_id)) for e in exps]
        if old_counts != [len(home.listed_run_ids(e.experiment_id)) for e in exps]:
            raise SystemExit("the two listings disagree: the benchmark is broken")

        # for information: everyday operations
        info: dict[str, tuple[float, int]] = {}
        w = machine().store()
        sweep = w.get_or_create_experiment("sweep")
        s, r, h = measured(proxy, lambda: w.create_run(sweep, run_name="one more"))
        s2, r2, _ = measured(proxy, lambda: (h.log_batch(params={"lr": "0.1"}, metrics=[("loss", 0.5, 0, None)]), h.end()))
        info["create a run, log params and metrics, end it"] = (s + s2, r + r2)
        train = w.get_or_create_experiment("train")
        model = bytearray((root / "model.bin").read_bytes())
        model[len(model) // 2 : len(model) // 2 + (64 << 10)] = random.Random(9).randbytes(64 << 10)
        (root / "model.bin").write_bytes(model)
        h = w.create_run(train, run_name="one more model")
        info["log the model with 64 KiB changed, a writer's first"] = measured(
            proxy, lambda: h.log_file("model/model.bin", root / "model.bin"))[:2]
        h.end()
        new = machine().store()
        info["search the big experiment, new machine"] = measured(proxy, lambda: new.search_runs([sweep], max_results=100))[:2]
        info["the same search, warm"] = measured(proxy, lambda: new.search_runs([sweep], max_results=100))[:2]
        trains = new.search_runs([new.get_or_create_experiment("train")], max_results=1)
        entry = new.get_run(trains[0].run_id).artifacts["model/model.bin"]
        from casstore.maintenance.gc import collect_garbage

        info["gc --dry-run"] = measured(proxy, lambda: collect_garbage(admin.backend, dry_run=True))[:2]

        # a new machine's first model load reads every index object of the packs once: before
        # gc folds the small ones (a writer publishes one per run that logs a file), and after
        def cold_load() -> None:
            cold = machine().store()
            cold.objects.get_file(entry.digest, root / "out.bin")

        index_objects = [sum(1 for _ in admin.backend.list("chunk-index/"))]
        for _ in range(args.repeat):
            rows["model load, new machine, before gc"].append(measured(proxy, cold_load)[:2])
        gc_s, gc_r, report = measured(proxy, lambda: collect_garbage(admin.backend))
        info[f"gc (grace 24h: folds {report.indexes_folded} index objects into {report.indexes_written})"] = (gc_s, gc_r)
        index_objects.append(sum(1 for _ in admin.backend.list("chunk-index/")))
        for _ in range(args.repeat):
            rows["model load, new machine, after gc"].append(measured(proxy, cold_load)[:2])
        run_index.flush_pending()
    if saved_cache is None:
        os.environ.pop("CASSTORE_CACHE_DIR", None)
    else:
        os.environ["CASSTORE_CACHE_DIR"] = saved_cache

    med = {k: (statistics.median(s for s, _ in v), statistics.median(r for _, r in v)) for k, v in rows.items()}
    print(f"\n{args.server}: {len(exps)} experiments, {args.runs + args.models} runs, {len(digests)} chunks in {packs} packs; "
          f"median of {args.repeat}, peers interleaved")
    print(f"{'':36} {'seconds':>9} {'requests':>9}")
    for k, (s, r) in med.items():
        print(f"{k:36} {s:9.3f} {r:9.0f}")
    for what, old, new_ in (("home listing", "home listing, old: every entry", "home listing, new: entries since"),
                            ("verify chunks", "verify chunks, old: GET per chunk", "verify chunks, new: ranged runs"),
                            ("verify runs", f"verify {len(some_runs)} runs, old: one by one",
                             f"verify {len(some_runs)} runs, new: at once"),
                            ("model load, new machine", "model load, new machine, before gc",
                             "model load, new machine, after gc")):
        print(f"{what}: new / old time = {med[new_][0] / med[old][0]:.2f}, requests {med[new_][1]:.0f} against {med[old][1]:.0f}")
    lists = med["home listing, new: entries since"][1]
    print(f"home listing, new: {lists:.0f} requests for {len(exps)} experiments "
          f"(goal <= 1 LIST per experiment: {'met' if lists <= len(exps) else 'MISSED'})")
    gets = med["verify chunks, new: ranged runs"][1]
    print(f"verify chunks, new: {gets:.0f} GETs for {packs} packs (goal <= 2 per pack: {'met' if gets <= 2 * packs else 'MISSED'})")
    loads = med["model load, new machine, after gc"][1]
    print(f"model load, new machine, after gc: {loads:.0f} requests with {index_objects[1]} index objects "
          f"(before gc: {index_objects[0]}; goal at most 64, whatever the number of runs: {'met' if loads <= 64 else 'MISSED'})")
    print("\nfor information:")
    for k, (s, r) in info.items():
        print(f"{k:48} {s:8.3f} s {r:7d} requests")


if __name__ == "__main__":
    main()
