"""The web UI beside MLflow 3's tracking server, on the same data.

    python benchmarks/bench_ui.py            # 10,000 runs, 5 histories of 100,000 points
    python benchmarks/bench_ui.py --quick    # small sizes: checks that it runs

One experiment of ``--runs`` runs, each with 20 params and 10 metrics, is written into a
casstore store and into MLflow (``sqlite:///<dir>/mlflow.db``); a second experiment holds
5 runs with ``--points`` points of one metric each. Then ``casstore ui`` and
``mlflow server --workers 1`` run as processes on free ports, and, interleaved, ``--repeat``
times each:

- **runs table**: the first page (100 runs) of the big experiment, filtered
  (``metrics.m1 > 0.5 and params.p0 = 'a'``) and sorted by ``metrics.m0`` descending:
  casstore's HTML page against MLflow's runs-search endpoint
  (``POST /api/2.0/mlflow/runs/search``, JSON) for the same query;
- **chart data**: the 5 histories of ``loss`` as a chart takes them: casstore's
  ``/api/metrics`` (downsampled, min/max per bucket) against the endpoint MLflow's UI
  charts from (``/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval``, sampled);
- **run page**: one run of the big experiment (the first of the table's page): casstore's
  HTML page (its header, params, metrics, tags, artifacts, and its child runs, looked for
  among the experiment's runs) against MLflow's ``GET /api/2.0/mlflow/runs/get`` (JSON);
- **peak memory** of each server (VmHWM; MLflow's summed over its processes).

casstore's first page right after the server starts (its local search index is filled from
the segments the writers published) and its first chart request (the 5 runs are read then)
are reported on their own.
Goals: the table and the run page at most 0.5 s, the table no slower than MLflow; chart data at most 1 s, the
first request for runs not read yet included; peak memory under 500 MiB.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import time
import traceback
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(Path(__file__).resolve().parent)]

from _common import scratch  # noqa: E402

FILTER = "metrics.m1 > 0.5 and params.p0 = 'a'"
ORDER = "metrics.m0 DESC"
PAGE = 100
PARAMS, METRICS, CHART_RUNS = 20, 10, 5
MIB = 1 << 20


def _values(i: int) -> tuple[dict[str, str], dict[str, float]]:
    rng = random.Random(i)
    params = {f"p{k}": rng.choice("abcd") if k == 0 else str(rng.randint(0, 1000)) for k in range(PARAMS)}
    metrics = {f"m{k}": rng.random() for k in range(METRICS)}
    return params, metrics


def _history(j: int, points: int) -> list[tuple[int, float, int]]:
    rng = random.Random(1000 + j)
    return [(s, 1.0 / (1 + s / 1000) + rng.random() * 0.05, 1_700_000_000_000 + s * 10) for s in range(points)]


def make_casstore(root: Path, runs: int, points: int) -> tuple[str, str, list[str]]:
    os.environ["CASSTORE_DURABLE"] = "0"  # setup only: the benchmark reads
    from casstore.runs import open_run_store

    store = open_run_store(str(root))
    exp = store.get_or_create_experiment("table")
    for i in range(runs):
        params, metrics = _values(i)
        h = store.create_run(exp, run_name=f"run-{i}", start_time=1_700_000_000_000 + i * 1000,
                             tags={"mlflow.user": "bench", "mlflow.source.name": "train.py"})
        for k, v in params.items():
            h.log_param(k, v)
        for k, v in metrics.items():
            h.log_metric(k, v, 0, 1_700_000_000_000 + i * 1000)
        h.end()
    curves = store.get_or_create_experiment("curves")
    ids = []
    for j in range(CHART_RUNS):
        h = store.create_run(curves, run_name=f"curve-{j}")
        for s, v, t in _history(j, points):
            h.log_metric("loss", v, s, t)
        h.end()
        ids.append(h.run_id)
    return exp, curves, ids


def make_mlflow(root: Path, runs: int, points: int) -> tuple[str, list[str]]:
    """MLflow's database, written in memory (/dev/shm: sqlite's fsync per run would take
    15 minutes for 10,000 runs here), then copied to ``root`` where the server reads it."""
    import shutil
    import tempfile

    root.mkdir(parents=True, exist_ok=True)
    shm = Path(tempfile.mkdtemp(prefix="bench-ui-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    try:
        out = _write_mlflow(shm, root, runs, points)
        shutil.copyfile(shm / "mlflow.db", root / "mlflow.db")
    finally:
        shutil.rmtree(shm)
    return out


def _write_mlflow(db_dir: Path, root: Path, runs: int, points: int) -> tuple[str, list[str]]:
    """The first run of each experiment through MLflow's client; the others as copies of
    its rows in every table with this run's values (MLflow's client takes about 60 ms a
    run here, 10 minutes for 10,000)."""
    import sqlite3
    import uuid

    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    db = db_dir / "mlflow.db"
    c = MlflowClient(tracking_uri=f"sqlite:///{db}")
    exp = c.create_experiment("table", artifact_location=str(root / "artifacts"))

    def log(exp_id: str, i: int, name: str, metrics: dict[str, float], params: dict[str, str]) -> str:
        run = c.create_run(exp_id, start_time=1_700_000_000_000 + i * 1000, run_name=name,
                           tags={"mlflow.user": "bench", "mlflow.source.name": "train.py"})
        rid = run.info.run_id
        c.log_batch(rid, metrics=[Metric(k, v, 1_700_000_000_000 + i * 1000, 0) for k, v in metrics.items()],
                    params=[Param(k, v) for k, v in params.items()], tags=[RunTag("x", "y")])
        c.set_terminated(rid, end_time=1_700_000_000_000 + i * 1000 + 500)
        return rid

    params0, metrics0 = _values(0)
    template = log(exp, 0, "run-0", metrics0, params0)
    curves = c.create_experiment("curves", artifact_location=str(root / "artifacts"))
    ids = []
    for j in range(CHART_RUNS):
        s0, v0, _ = _history(j, 1)[0]
        ids.append(log(curves, j, f"curve-{j}", {"loss": v0}, {}))
    con = sqlite3.connect(db)
    cur = con.cursor()

    def rows(table: str, run_id: str) -> tuple[list[str], list[dict[str, Any]]]:
        cur.execute(f"SELECT * FROM {table} WHERE run_uuid = ?", (run_id,))  # noqa: S608 - our own table names
        cols = [d[0] for d in cur.description]
        return cols, [dict(zip(cols, r)) for r in cur.fetchall()]

    def insert(table: str, cols: list[str], items: list[dict[str, Any]]) -> None:
        cur.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                        [tuple(r[k] for k in cols) for r in items])

    tables = {t: rows(t, template) for t in ("runs", "tags", "params", "metrics", "latest_metrics")}
    out: dict[str, list[dict[str, Any]]] = {t: [] for t in tables}
    for i in range(1, runs):
        rid, name = uuid.uuid4().hex, f"run-{i}"
        params, metrics = _values(i)
        ts = 1_700_000_000_000 + i * 1000
        for r in tables["runs"][1]:
            out["runs"].append({**r, "run_uuid": rid, "name": name, "start_time": ts, "end_time": ts + 500,
                                "artifact_uri": str(r["artifact_uri"]).replace(template, rid)})
        for r in tables["tags"][1]:
            out["tags"].append({**r, "run_uuid": rid, "value": name if r["key"] == "mlflow.runName" else r["value"]})
        for r in tables["params"][1]:
            out["params"].append({**r, "run_uuid": rid, "value": params[r["key"]]})
        for t in ("metrics", "latest_metrics"):
            for r in tables[t][1]:
                out[t].append({**r, "run_uuid": rid, "value": metrics[r["key"]], "timestamp": ts})
    for t, (cols, _) in tables.items():
        insert(t, cols, out[t])
    for j, rid in enumerate(ids):  # the rest of each history
        cols, first = rows("metrics", rid)
        hist = _history(j, points)
        insert("metrics", cols, [{**first[0], "value": v, "step": st, "timestamp": t} for st, v, t in hist[1:]])
        st, v, t = hist[-1]
        cur.execute("UPDATE latest_metrics SET value = ?, step = ?, timestamp = ? WHERE run_uuid = ? AND key = 'loss'",
                    (v, st, t, rid))
    con.commit()
    con.close()
    check = c.search_runs([exp], FILTER, max_results=5000)
    if len(check) != sum(1 for i in range(runs) if _values(i)[0]["p0"] == "a" and _values(i)[1]["m1"] > 0.5):
        raise RuntimeError("the copied MLflow runs do not match the data")
    return exp, ids


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(args: list[str], url: str, log: Path, timeout: float = 120) -> subprocess.Popen[bytes]:
    out = open(log, "wb")  # noqa: SIM115 - kept open for the server's life
    proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{args[:4]} did not start: {log.read_text()[-2000:]}") from None
            time.sleep(0.2)


def stop(proc: subprocess.Popen[bytes]) -> None:
    import signal

    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def peak_rss(pid: int) -> int:
    """VmHWM of a process and its descendants, in bytes."""
    import psutil

    total = 0
    try:
        procs = [psutil.Process(pid)] + psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return 0
    for p in procs:
        try:
            for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def fetch(url: str, body: dict[str, Any] | None = None) -> tuple[float, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json"} if data else {})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=300) as r:
        content = r.read()
        if r.status != 200:
            raise RuntimeError(f"{url}: HTTP {r.status}")
    return time.perf_counter() - t0, content


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="small sizes (500 runs, 5,000 points, 2 repeats)")
    ap.add_argument("--dir", default=None, help="where to make the stores (default: the temporary directory)")
    a = ap.parse_args()
    if a.quick:
        a.runs, a.points, a.repeat = 500, 5_000, 2
    from urllib.parse import urlencode

    with scratch("bench-ui-", a.dir) as work:
        t0 = time.perf_counter()
        cas_exp, _, cas_curves = make_casstore(work / "casstore", a.runs, a.points)
        t1 = time.perf_counter()
        ml_exp, ml_curves = make_mlflow(work / "mlflow", a.runs, a.points)
        t2 = time.perf_counter()
        print(f"data: {a.runs} runs x {PARAMS} params x {METRICS} metrics, {CHART_RUNS} histories of {a.points} points "
              f"(written in {t1 - t0:.0f} s into casstore, {t2 - t1:.0f} s into MLflow)")

        os.environ["CASSTORE_CACHE_DIR"] = str(work / "cache")  # the UI's local search index, removed with the rest
        cport, mport = free_port(), free_port()
        cas_base, ml_base = f"http://127.0.0.1:{cport}", f"http://127.0.0.1:{mport}"
        env_python = sys.executable
        started = time.perf_counter()
        cas = start([env_python, "-m", "casstore.cli", "ui", "--store", str(work / "casstore"), "--port", str(cport)],
                    cas_base + "/static/app.css", work / "cas.log")
        ml: subprocess.Popen[bytes] | None = None
        try:
            table_url = f"{cas_base}/experiments/{cas_exp}?" + urlencode({"filter": FILTER, "order": ORDER})
            cold_table, page = fetch(table_url)
            cold_since_start = time.perf_counter() - started
            ml = start([env_python, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{work}/mlflow/mlflow.db",
                        "--default-artifact-root", str(work / "mlflow" / "artifacts"), "--host", "127.0.0.1",
                        "--port", str(mport), "--workers", "1"], ml_base + "/health", work / "ml.log")
            shown = page.decode().count('<td data-col="run_name"')
            search_body = {"experiment_ids": [ml_exp], "filter": FILTER, "order_by": [ORDER], "max_results": PAGE}
            _, ml_page = fetch(f"{ml_base}/api/2.0/mlflow/runs/search", search_body)
            ml_shown = len(json.loads(ml_page).get("runs", []))
            run_url = cas_base + re.search(rb'href="(/runs/[0-9a-f]{32})"', page).group(1).decode()
            ml_run_url = f"{ml_base}/api/2.0/mlflow/runs/get?run_id={json.loads(ml_page)['runs'][0]['info']['run_id']}"
            chart_url = f"{cas_base}/api/metrics?" + urlencode([("run", r) for r in cas_curves] + [("key", "loss")])
            ml_chart_url = (f"{ml_base}/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval?"
                            + urlencode([("run_ids", r) for r in ml_curves] + [("metric_key", "loss"), ("max_results", "1000")]))
            cold_chart, chart = fetch(chart_url)
            sizes = [len(s["xs"]) for s in json.loads(chart)["series"]]
            fetch(ml_chart_url)
            times: dict[str, list[float]] = {k: [] for k in ("cas_table", "ml_table", "cas_chart", "ml_chart",
                                                              "cas_run", "ml_run")}
            for _ in range(a.repeat):
                times["cas_run"].append(fetch(run_url)[0])
                times["ml_run"].append(fetch(ml_run_url)[0])
                times["cas_table"].append(fetch(table_url)[0])
                times["ml_table"].append(fetch(f"{ml_base}/api/2.0/mlflow/runs/search", search_body)[0])
                times["cas_chart"].append(fetch(chart_url)[0])
                times["ml_chart"].append(fetch(ml_chart_url)[0])
            cas_mem, ml_mem = peak_rss(cas.pid), peak_rss(ml.pid)
        except BaseException:
            traceback.print_exc()  # now: removing the stores takes minutes
            print(f"casstore ui exit status: {cas.poll()}; mlflow server: {ml and ml.poll()}", flush=True)
            raise
        finally:
            stop(cas)
            if ml is not None:
                stop(ml)

        # reported before the stores are removed (removing 10,000 runs takes minutes)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"runs table, first page of {PAGE} ({shown} shown by casstore, {ml_shown} by MLflow), "
              f"filter {FILTER!r}, order {ORDER!r}:")
        print(f"  casstore ui (HTML page)          {med['cas_table'] * 1000:8.1f} ms   (goal <= 500 ms: "
              f"{'met' if med['cas_table'] <= 0.5 else 'MISSED'})")
        print(f"  mlflow server runs/search (JSON) {med['ml_table'] * 1000:8.1f} ms")
        print(f"  casstore / mlflow                {med['cas_table'] / med['ml_table']:8.2f}x   (goal <= 1: "
              f"{'met' if med['cas_table'] <= med['ml_table'] else 'MISSED'})")
        print(f"  casstore's first page after start (merges the index of {a.runs} runs): {cold_table:.2f} s "
              f"({cold_since_start:.1f} s from the server's start)")
        print(f"chart data, {CHART_RUNS} runs x {a.points} points of 'loss' ({max(sizes)} points each served by casstore):")
        print(f"  casstore ui /api/metrics         {med['cas_chart'] * 1000:8.1f} ms   (goal <= 1000 ms: "
              f"{'met' if med['cas_chart'] <= 1.0 else 'MISSED'})")
        print(f"  mlflow get-history-bulk-interval {med['ml_chart'] * 1000:8.1f} ms")
        print(f"  casstore / mlflow                {med['cas_chart'] / med['ml_chart']:8.2f}x")
        print(f"  casstore's first request for them (reads the 5 runs): {cold_chart * 1000:8.1f} ms   (goal <= 1000 ms: "
              f"{'met' if cold_chart <= 1.0 else 'MISSED'})")
        print("run page, one run of the big experiment:")
        print(f"  casstore ui /runs/<id> (HTML)    {med['cas_run'] * 1000:8.1f} ms   (goal <= 500 ms: "
              f"{'met' if med['cas_run'] <= 0.5 else 'MISSED'})")
        print(f"  mlflow server runs/get (JSON)    {med['ml_run'] * 1000:8.1f} ms")
        print(f"  casstore / mlflow                {med['cas_run'] / med['ml_run']:8.2f}x")
        print("peak memory (VmHWM):")
        print(f"  casstore ui                      {cas_mem / MIB:8.0f} MiB   (goal < 500 MiB: {'met' if cas_mem < 500 * MIB else 'MISSED'})")
        print(f"  mlflow server --workers 1        {ml_mem / MIB:8.0f} MiB (all its processes)")
        print(f"  casstore / mlflow                {cas_mem / ml_mem:8.2f}x", flush=True)


if __name__ == "__main__":
    main()
