"""Serving: ``casstore models serve`` vs ``mlflow models serve --env-manager local`` on the same model.

The same sklearn model (a LogisticRegression over iris's four named columns) is logged
and registered in a casstore store; casstore serves ``models:/bench@champion`` (fetched
and verified at start), MLflow serves the same model directory, both on loopback with
the same worker count and their default logging (an access line per request).
Measured, the peers interleaved:

- single-row latency over ``--requests`` sequential requests (``dataframe_split``, one
  keep-alive connection), in blocks of 100 alternating between the peers; p50 and p99;
  goal: casstore's p50 no worse than MLflow's;
- throughput with ``--clients`` concurrent clients (threads with keep-alive connections,
  in a separate load-generator process) for ``--seconds`` in all per peer, in two
  alternating halves; goal: at least MLflow's;
- time from start to the first 200 on ``/ping`` for a model of ``--big-mb`` MB (a
  brute-force KNeighborsRegressor holding its training data), casstore's fetch and
  verification of every byte included; median of ``--starts`` starts per peer,
  alternating; goal: no slower than MLflow's;
- the memory of that model served with ``--mem-workers`` workers: the proportional set
  size (PSS) of every process of each server, summed (no goal: what workers cost).

The load generator is bounded: it stops by itself after its time, and every request has
a timeout. Failed requests are counted and printed (and must be none).

    python benchmarks/bench_serving.py [--quick] [--requests 2000] [--clients 16] [--seconds 20]
                                       [--workers 1] [--big-mb 200] [--starts 3]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import scratch  # noqa: E402

COLS = ["sl", "sw", "pl", "pw"]
ROW = {"dataframe_split": {"columns": COLS, "data": [[5.1, 3.5, 1.4, 0.2]]}}
BODY = json.dumps(ROW).encode()
HEADERS = {"Content-Type": "application/json"}
PEERS = ("casstore", "mlflow")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mlflow_env(work: Path) -> dict[str, str]:
    return {**os.environ, "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true",
            "MLFLOW_TRACKING_URI": f"sqlite:///{work}/mlflow.db", "PYTHONWARNINGS": "ignore"}


def command(peer: str, target: str, store: str, port: int, workers: int) -> list[str]:
    if peer == "casstore":
        return [sys.executable, "-m", "casstore.cli", "models", "serve", "-m", target, "--store", store,
                "--port", str(port), "--workers", str(workers)]
    return [sys.executable, "-m", "mlflow", "models", "serve", "-m", target, "--env-manager", "local",
            "-h", "127.0.0.1", "-p", str(port), "-w", str(workers)]


def ping(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/ping")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


def pss_mb(pid: int) -> float:
    """The proportional set size of a process and its descendants, in MB (each shared
    page counted once across them)."""
    import psutil

    root = psutil.Process(pid)
    return sum(p.memory_full_info().pss for p in [root, *root.children(recursive=True)]) / 1e6


@contextmanager
def server(peer: str, target: str, store: str, work: Path, workers: int, timeout: float = 600) -> Iterator[tuple[int, float, int]]:
    """A started server: its port, seconds from spawn to the first 200 on /ping, its pid."""
    port = free_port()
    started = time.perf_counter()
    proc = subprocess.Popen(command(peer, target, store, port, workers), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=mlflow_env(work), start_new_session=True)
    try:
        while not ping(port):
            if proc.poll() is not None:
                raise RuntimeError(f"{peer}'s server exited with {proc.returncode}: {' '.join(command(peer, target, store, port, workers))}")
            if time.perf_counter() - started > timeout:
                raise RuntimeError(f"{peer}'s server did not answer /ping within {timeout:.0f} s")
            time.sleep(0.01)
        yield port, time.perf_counter() - started, proc.pid
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# ---- the models -----------------------------------------------------------------------------------


def quiet() -> None:
    warnings.filterwarnings("ignore")
    import logging

    for name in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.ERROR)


def log_models(work: Path, big_mb: float) -> dict[str, str]:
    """The small and the big model, logged and registered in a casstore store and
    downloaded as MLflow model directories; returns the paths and URIs."""
    import numpy as np
    import pandas as pd
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsRegressor

    import casstore
    import casstore.sklearn

    store = str(work / "store")
    casstore.set_tracking_uri(store)
    X, y = load_iris(return_X_y=True)
    df = pd.DataFrame(X, columns=COLS)
    small = LogisticRegression(max_iter=300).fit(df, y)
    rows = max(1, int(big_mb * 1e6 / (8 * 5)))  # four float64 features and a float64 target a row
    rng = np.random.default_rng(0)
    big_X = pd.DataFrame(rng.random((rows, 4)), columns=COLS)
    big = KNeighborsRegressor(algorithm="brute").fit(big_X, rng.random(rows))
    out = {"store": store}
    with casstore.start_run():
        for name, model, example in (("bench", small, df.head(3)), ("big", big, big_X.head(3))):
            info = casstore.sklearn.log_model(model, name, input_example=example, registered_model_name=name)
            casstore.Client().set_registered_model_alias(name, "champion", info.registered_model_version)
            casstore.sklearn.load_model(info.model_uri, dst_path=work / name)
            out[name] = str(work / name)
            out[name + "_uri"] = f"models:/{name}@champion"
            out[name + "_bytes"] = str((work / name / "model.pkl").stat().st_size)
    return out


# ---- the load --------------------------------------------------------------------------------------


def sequential(port: int, n: int) -> tuple[list[float], int]:
    """``n`` requests one after another on one new keep-alive connection (opened before
    the clock starts): latencies (s), failures."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.connect()
    times, failed = [], 0
    for _ in range(n):
        t = time.perf_counter()
        conn.request("POST", "/invocations", body=BODY, headers=HEADERS)
        r = conn.getresponse()
        r.read()
        times.append(time.perf_counter() - t)
        failed += r.status != 200
    conn.close()
    return times, failed


LOAD = r'''
import http.client, json, sys, threading, time
port, clients, seconds, body = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4].encode()
done, failed, lock = [0], [0], threading.Lock()
stop_at = time.perf_counter() + seconds
def client():
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    n = bad = 0
    while time.perf_counter() < stop_at:
        try:
            conn.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
            r = conn.getresponse(); r.read()
            n += 1; bad += r.status != 200
        except OSError:
            bad += 1; conn.close(); conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    with lock:
        done[0] += n; failed[0] += bad
threads = [threading.Thread(target=client) for _ in range(clients)]
t0 = time.perf_counter()
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps({"requests": done[0], "failed": failed[0], "seconds": time.perf_counter() - t0}))
'''


def throughput(port: int, clients: int, seconds: float) -> tuple[int, int, float]:
    """Requests answered by ``clients`` concurrent clients in a load-generator process."""
    out = subprocess.run([sys.executable, "-c", LOAD, str(port), str(clients), str(seconds), BODY.decode()],
                         capture_output=True, text=True, timeout=seconds + 120, check=True)
    r = json.loads(out.stdout)
    return int(r["requests"]), int(r["failed"]), float(r["seconds"])


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes: 200 requests, 3 s, a 20 MB model, 1 start")
    ap.add_argument("--requests", type=int, default=None, help="sequential single-row requests per peer (2000)")
    ap.add_argument("--clients", type=int, default=16, help="concurrent clients (16)")
    ap.add_argument("--seconds", type=float, default=None, help="seconds of concurrent load per peer (20)")
    ap.add_argument("--workers", type=int, default=1, help="worker processes of each server (1)")
    ap.add_argument("--big-mb", type=float, default=None, help="size of the model whose start is timed (200)")
    ap.add_argument("--starts", type=int, default=None, help="starts timed per peer (3)")
    ap.add_argument("--mem-workers", type=int, default=2, help="workers when the big model's memory is measured (2)")
    ap.add_argument("--dir", default=None, help="where to work (default: a temp directory)")
    args = ap.parse_args()
    n = args.requests or (200 if args.quick else 2000)
    seconds = args.seconds or (3.0 if args.quick else 20.0)
    big_mb = args.big_mb or (20.0 if args.quick else 200.0)
    starts = args.starts or (1 if args.quick else 3)
    try:
        import mlflow  # noqa: F401
    except ImportError:
        print("MLflow is not installed: pip install 'casstore[bench]'", file=sys.stderr)
        sys.exit(1)
    quiet()
    with scratch("casstore-bench-serving-", args.dir) as work:
        m = log_models(work, big_mb)
        print(f"# bench_serving: {n} sequential requests, {args.clients} clients x {seconds:g} s, "
              f"{args.workers} worker(s) each; start of a {int(m['big_bytes']) / 1e6:,.1f} MB model x {starts}")
        targets = {"casstore": m["bench_uri"], "mlflow": m["bench"]}
        lat: dict[str, list[float]] = {p: [] for p in PEERS}
        tput: dict[str, list[tuple[int, int, float]]] = {p: [] for p in PEERS}
        failed = {p: 0 for p in PEERS}
        with server("casstore", targets["casstore"], m["store"], work, args.workers) as (cport, _, _), \
                server("mlflow", targets["mlflow"], m["store"], work, args.workers) as (mport, _, _):
            ports = {"casstore": cport, "mlflow": mport}
            for p in PEERS:
                sequential(ports[p], 50)  # warm up
            for _ in range(max(1, n // 100)):
                for p in PEERS:
                    times, bad = sequential(ports[p], min(100, n))
                    lat[p] += times
                    failed[p] += bad
            for _ in range(2):
                for p in PEERS:
                    done, bad, secs = throughput(ports[p], args.clients, seconds / 2)
                    tput[p].append((done, bad, secs))
                    failed[p] += bad
        start: dict[str, list[float]] = {p: [] for p in PEERS}
        big = {"casstore": m["big_uri"], "mlflow": m["big"]}
        for _ in range(starts):
            for p in PEERS:
                with server(p, big[p], m["store"], work, 1) as (_, secs, _):
                    start[p].append(secs)
        mem: dict[str, float] = {}
        for p in PEERS:
            with server(p, big[p], m["store"], work, args.mem_workers) as (port, _, pid):
                deadline = time.monotonic() + 120  # every worker up: /ping answered as often as there are workers
                while time.monotonic() < deadline and sum(ping(port) for _ in range(4 * args.mem_workers)) < 4 * args.mem_workers:
                    time.sleep(0.2)
                time.sleep(1.0)
                mem[p] = pss_mb(pid)

    rps = {p: sum(d for d, _, _ in tput[p]) / sum(s for _, _, s in tput[p]) for p in PEERS}
    p50 = {p: pct(lat[p], 0.5) * 1e3 for p in PEERS}
    p99 = {p: pct(lat[p], 0.99) * 1e3 for p in PEERS}
    st = {p: statistics.median(start[p]) for p in PEERS}
    print()
    print("| measure | casstore | MLflow | casstore / MLflow |")
    print("|---|---|---|---|")
    print(f"| single-row latency p50 | {p50['casstore']:.2f} ms | {p50['mlflow']:.2f} ms | {p50['casstore'] / p50['mlflow']:.2f} |")
    print(f"| single-row latency p99 | {p99['casstore']:.2f} ms | {p99['mlflow']:.2f} ms | {p99['casstore'] / p99['mlflow']:.2f} |")
    print(f"| throughput, {args.clients} clients | {rps['casstore']:,.0f} req/s | {rps['mlflow']:,.0f} req/s | "
          f"{rps['casstore'] / rps['mlflow']:.2f} |")
    print(f"| start to first 200 on /ping, {int(m['big_bytes']) / 1e6:,.0f} MB model | {st['casstore']:.2f} s | "
          f"{st['mlflow']:.2f} s | {st['casstore'] / st['mlflow']:.2f} |")
    print(f"| memory of the {int(m['big_bytes']) / 1e6:,.0f} MB model, {args.mem_workers} workers (PSS) | "
          f"{mem['casstore']:,.0f} MB | {mem['mlflow']:,.0f} MB | {mem['casstore'] / mem['mlflow']:.2f} |")
    print(f"\nstarts: casstore {', '.join(f'{t:.2f}' for t in start['casstore'])} s; "
          f"MLflow {', '.join(f'{t:.2f}' for t in start['mlflow'])} s")
    print(f"failed requests: casstore {failed['casstore']}, MLflow {failed['mlflow']}")
    checks = [
        ("single-row latency p50", p50["casstore"] / p50["mlflow"], "<= 1.00", p50["casstore"] <= p50["mlflow"]),
        ("throughput", rps["casstore"] / rps["mlflow"], ">= 1.00", rps["casstore"] >= rps["mlflow"]),
        ("start to first 200", st["casstore"] / st["mlflow"], "<= 1.00", st["casstore"] <= st["mlflow"]),
    ]
    print()
    print("| goal | ratio | target | met |")
    print("|---|---|---|---|")
    for what, ratio, target, met in checks:
        print(f"| {what} | {ratio:.2f} | {target} | {'yes' if met else 'NO'} |")
    ok = all(met for *_, met in checks) and not any(failed.values())
    print("all goals met" if ok else "some goals NOT met (see the table)")


if __name__ == "__main__":
    main()
