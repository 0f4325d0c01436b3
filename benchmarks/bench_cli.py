"""The `casstore` command on large stores: verify against b3sum, runs and du on many runs.

1. ``casstore verify --all`` over a store of 2 GiB of chunks (``--quick``: 256 MiB),
   one of each layout (loose chunks, packs), side by side with ``b3sum`` over the
   files that hold the same bytes (the chunk files, the packs). Goal: verify within
   1.5x of ``b3sum``. Everything reads from a warm page cache (each is run once before
   timing), and the peers take turns in a rotating order. Beside them,
   ``verify_store()`` as a library call against one BLAKE3 pass over the same files
   in process.
2. ``casstore runs`` and ``casstore du`` (table and ``--json``) over a store of 10,000
   runs (``--quick``: 1,000), each with params, metrics and two artifacts (one shared by
   the runs of its experiment). Goal: each under 5 s on a local store.

Beside them, the start-up of a new process: the bare interpreter, ``import casstore``,
``casstore --help``, ``casstore verify --all`` of an empty store, and ``import casstore``
with one name of the tracking API loaded.

Each process runs this checkout's casstore with its compiled bytecode kept between runs
(in ``--workdir``), as an installed casstore has it: pip compiles a package's modules when
it installs it, so a command does not compile its modules at each start even where the
environment sets ``PYTHONDONTWRITEBYTECODE``.

Stores are generated through the runs layer into ``--workdir`` (kept, and reused by
later invocations with the same sizes). Medians of ``--repeat`` timings are printed.

    python benchmarks/bench_cli.py [--quick] [--repeat 5] [--only startup,verify,runs] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

GIB = 1 << 30
FILE_SIZE = 64 << 20


def median_time(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up: page cache, imports
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def process_env(work: Path) -> dict[str, str]:
    """The environment of a timed process: this checkout's casstore, and compiled bytecode kept
    in ``work`` between runs (as an installed casstore has it), whatever this environment says."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPATH": str(REPO), "PYTHONPYCACHEPREFIX": str(work / "pycache")}


def cli(work: Path, *args: str) -> Callable[[], None]:
    """A run of the real command in a new process; output goes to a pipe, as in a script."""
    env = {**process_env(work), "CI": "1"}
    argv = [sys.executable, "-c", "from casstore.cli import main; main()", *args]

    def go() -> None:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        if p.returncode != 0:
            raise SystemExit(f"{' '.join(args)} failed ({p.returncode}): {p.stderr.decode()[-500:]}")

    return go


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


# ---- verify ----------------------------------------------------------------------------------


B3SUM = shutil.which("b3sum")


def build_verify_store(root: Path, size: int, layout: str = "loose") -> None:
    from casstore.objects import LAYOUT_ENV
    from casstore.runs import open_run_store

    marker = root.with_name(root.name + ".complete")  # beside the store, not in it
    if marker.exists():
        return
    os.environ["CASSTORE_DURABLE"] = "0"
    os.environ[LAYOUT_ENV] = layout  # the layout of the new store
    store = open_run_store(str(root))
    exp = store.get_or_create_experiment("bench-verify")
    rng = random.Random(42)
    h = store.create_run(exp, run_name="data")
    for i in range(max(1, size // FILE_SIZE)):
        h.log_bytes(f"part-{i:04d}.bin", rng.randbytes(FILE_SIZE))
    h.end()
    store.objects.flush()
    marker.write_text("ok\n")


def content_paths(root: Path) -> list[str]:
    """The files that hold a store's chunks: chunk objects (loose) or packs."""
    out = []
    for top in ("chunks", "packs"):
        for dirpath, _dirs, files in os.walk(root / top):
            out.extend(os.path.join(dirpath, f) for f in files if not f.startswith("."))
    return sorted(out)


def one_pass_blake3(paths: list[str]) -> Callable[[], str]:
    from blake3 import blake3

    def go() -> str:
        h = blake3(max_threads=blake3.AUTO)
        for p in paths:
            with open(p, "rb") as f:
                h.update(f.read())
        return h.hexdigest()

    return go


def b3sum(paths: list[str]) -> Callable[[], None]:
    """``b3sum`` over the files, as a user would check them: one process, every core."""
    def go() -> None:
        assert B3SUM is not None
        subprocess.run([B3SUM, "--no-names", *paths], check=True, stdout=subprocess.DEVNULL)

    return go


def interleaved(peers: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Median seconds of each peer, run once untimed (page cache, imports), then ``repeat``
    times in a rotating order."""
    names = list(peers)
    for fn in peers.values():
        fn()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeat):
        for n in names[r % len(names):] + names[: r % len(names)]:
            t = time.perf_counter()
            peers[n]()
            times[n].append(time.perf_counter() - t)
    return {n: statistics.median(v) for n, v in times.items()}


def bench_verify(work: Path, quick: bool, repeat: int) -> list[tuple[str, float, str]]:
    from casstore.maintenance.verify import verify_store
    from casstore.objects import open_store
    from casstore.runs import RunStore

    size = (256 << 20) if quick else 2 * GIB
    peers: dict[str, Callable[[], object]] = {}
    stored: dict[str, int] = {}
    roots = {layout: work / f"verify-{size >> 20}MiB{'' if layout == 'loose' else '-' + layout}" for layout in ("loose", "packs")}
    for layout, root in roots.items():
        t = time.perf_counter()
        build_verify_store(root, size, layout)
        print(f"verify store ({layout}): {size >> 20} MiB at {root} (ready in {time.perf_counter() - t:.1f}s)", flush=True)
        paths = content_paths(root)
        stored[layout] = sum(os.path.getsize(p) for p in paths)
        if B3SUM is not None:
            peers[f"b3sum ({layout})"] = b3sum(paths)
        peers[f"verify --all ({layout})"] = cli(work, "verify", "--all", "--store", str(root))
        if layout == "loose":
            peers["floor in process (loose)"] = one_pass_blake3(paths)

            def library(root: Path = root) -> None:
                if not verify_store(RunStore(open_store(str(root), create=False))).ok:
                    raise SystemExit("the benchmark store does not verify")

            peers["verify_store() (loose)"] = library
    med = interleaved(peers, repeat)
    rows = []
    for layout in roots:
        gbs = stored[layout] / GIB
        cmd = med[f"verify --all ({layout})"]
        floor = med.get(f"b3sum ({layout})")
        if floor is not None:
            rows.append((f"b3sum over the {layout} store's files ({gbs:.2f} GiB)", floor, f"{gbs / floor:.2f} GiB/s"))
        note = "b3sum is not installed" if floor is None else (
            f"{cmd / floor:.2f}x b3sum (goal <= 1.5x at 2 GiB: "
            f"{'not judged at the quick size, where start-up dominates' if quick else _met(cmd <= 1.5 * floor)})")
        rows.append((f"casstore verify --all, {layout} layout (process)", cmd, note))
    lib, inproc = med["verify_store() (loose)"], med["floor in process (loose)"]
    rows.append(("one-pass BLAKE3 over the loose files, in process", inproc, f"{stored['loose'] / GIB / inproc:.2f} GiB/s"))
    rows.append(("verify_store() (library call, loose)", lib, f"{lib / inproc:.2f}x the in-process pass"))
    return rows


# ---- start-up --------------------------------------------------------------------------------


def bench_startup(work: Path, repeat: int) -> list[tuple[str, float, str]]:
    """What a command pays before it works: the interpreter alone, ``import casstore``
    (its public names load on first use), ``casstore --help`` (the command's own
    modules) and ``casstore verify --all`` of an empty store (the layers verifying
    loads), each a new process, taking turns."""
    from casstore.objects import open_store

    env = process_env(work)
    empty = work / "empty-store"
    open_store(str(empty))  # creates it (a local store: the loose layout)

    def process(*argv: str) -> Callable[[], None]:
        return lambda: subprocess.run([sys.executable, *argv], check=True, stdout=subprocess.DEVNULL, env=env)

    med = interleaved({
        "python": process("-c", "pass"),
        "import casstore": process("-c", "import casstore"),
        "casstore --help": process("-c", "from casstore.cli import main; main(['--help'])"),
        "casstore verify --all, empty store": process("-c", "from casstore.cli import main; main()", "verify", "--all",
                                                      "--store", str(empty)),
        "import casstore; casstore.start_run": process("-c", "import casstore; casstore.start_run"),
    }, repeat)
    bare = med.pop("python")
    rows = [("a new python process (-c pass)", bare, "")]
    rows += [(f"{name} (process)", secs, f"{secs - bare:.3f}s above the bare interpreter") for name, secs in med.items()]
    return rows


# ---- runs and du ----------------------------------------------------------------------------


def _make_runs(root: str, worker: int, count: int, experiments: int) -> None:
    os.environ["CASSTORE_DURABLE"] = "0"
    from casstore.runs import open_run_store

    store = open_run_store(root)
    rng = random.Random(1000 + worker)
    exps = [store.get_or_create_experiment(f"exp-{i:02d}") for i in range(experiments)]
    datasets = [random.Random(i).randbytes(64 << 10) for i in range(experiments)]
    for n in range(count):
        e = n % experiments
        h = store.create_run(exps[e], run_name=f"run-{worker}-{n}")
        h.log_param("lr", str(rng.choice([0.1, 0.01, 0.001])))
        h.log_param("depth", str(rng.randint(2, 12)))
        h.log_param("seed", str(n))
        h.log_metric("loss", rng.random(), 0, 0)
        h.log_metric("auc", rng.random(), 0, 0)
        h.log_bytes("data/train.csv", datasets[e])
        h.log_bytes("model.bin", rng.randbytes(2048))
        h.end()


def build_runs_store(root: Path, runs: int, workers: int = 2) -> None:
    marker = root.with_name(root.name + ".complete")  # beside the store, not in it
    if marker.exists():
        return
    from casstore.runs import open_run_store

    open_run_store(str(root))
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_make_runs, args=(str(root), w, runs // workers, 10)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise SystemExit("generating the runs store failed")
    marker.write_text("ok\n")


def bench_runs(work: Path, quick: bool, repeat: int) -> list[tuple[str, float, str]]:
    n = 1000 if quick else 10_000
    root = work / f"runs-{n}"
    t = time.perf_counter()
    build_runs_store(root, n)
    print(f"runs store: {n} runs at {root} (ready in {time.perf_counter() - t:.1f}s)", flush=True)
    rows = []
    for args in (["runs"], ["runs", "--json"], ["du"], ["du", "--json"]):
        secs = median_time(cli(work, *args, "--store", str(root)), repeat)
        rows.append((f"casstore {' '.join(args)} ({n} runs)", secs,
                     f"{secs / 5:.2f}x the 5 s budget (goal < 5 s: {_met(secs < 5)})"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (256 MiB, 1,000 runs)")
    ap.add_argument("--repeat", type=int, default=5, help="timed repetitions (median printed)")
    ap.add_argument("--only", default="startup,verify,runs", help="comma-separated: startup, verify, runs")
    ap.add_argument("--workdir", default=None, help="where to build (and keep) the benchmark stores")
    args = ap.parse_args()
    work = Path(args.workdir or os.path.join(tempfile.gettempdir(), "casstore-bench-cli"))
    work.mkdir(parents=True, exist_ok=True)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    rows: list[tuple[str, float, str]] = []
    if "startup" in only:
        rows += bench_startup(work, args.repeat)
    if "verify" in only:
        rows += bench_verify(work, args.quick, args.repeat)
    if "runs" in only:
        rows += bench_runs(work, args.quick, args.repeat)
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measurement':<{width}}  {'median':>9}  note")
    for name, secs, note in rows:
        print(f"{name:<{width}}  {secs:8.3f}s  {note}")


if __name__ == "__main__":
    main()
