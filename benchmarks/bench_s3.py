"""casstore on S3 against s3fs's ``put_file``, through real S3 servers on loopback.

Starts an S3 server on 127.0.0.1: SeaweedFS (``weed server -s3``, see ``tests/seaweed.py``),
a separate S3 implementation with storage of its own, and moto's S3 server in a child
process (``tests/s3_server.py``), one after the other (``--server`` picks one), then, for
a fresh random file (256 MiB; ``--quick``: 16 MiB), per repetition:

* peer: ``s3fs.S3FileSystem.put_file`` of the file (s3fs defaults: multipart, 10 parts
  at once) to a new key;
* casstore fresh: ``log_file`` of the file into a run of a new, empty store of the loose
  layout (one object per chunk);
* casstore re-log: ``log_file`` of the same file into a new run of that store (only
  existence checks and the records travel).

``+MiB`` is how far the client's resident set rose above where it was while the step ran
(its peak, Linux only). Then, for information, downloads: s3fs ``get_file`` against casstore's verified
``get_file``; and a directory of small files (200 of 4 KiB; ``--quick``: 50): s3fs
``put(recursive=True)`` against casstore's ``log_files`` of the same tree into a run
(a small artifact is one object, its run record, in a version-3 store). Prints medians (wall time, and the CPU time of the client and server
processes together, steadier on a busy machine), the ratios against the peer, and
the HTTP requests per logged GiB (counted with botocore's ``before-send`` event, so
retries count too).

Goals: fresh / put_file <= 1.0; put_file / re-log >= 5.

Each repetition also logs the file into a new store opened without a layout, which on
S3 is the packs layout (``packs fresh``), then a copy with 1 MiB overwritten in the
middle into a new run of it (``packs changed``), and downloads it verified (``packs
get_file``); the loose store gets the same changed copy (``casstore changed``), so the
two layouts are side by side. ``--no-loose`` leaves the loose store out (for large
files: its requests grow with the file). The peak resident set of the process is
printed at the end (the file never is in memory whole). ``--put-sizes 8,16,32,64`` also
sends the file's bytes from memory as single PUTs of each size (``PUTs of 32 MiB``), as
many at once as a pack writer sends packs: the floor of the packs upload without the
cutting and hashing, and how the server takes each object size.

    python benchmarks/bench_s3.py                       # 256 MiB, 5 repetitions, both servers
    python benchmarks/bench_s3.py --quick               # 16 MiB, 2 repetitions
    python benchmarks/bench_s3.py --server seaweedfs    # one server only
    python benchmarks/bench_s3.py --size-mib 1024 --repeat 3 --no-loose --small-files 0
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from s3_server import DUMMY_CREDENTIALS, LoopbackS3, make_bucket  # noqa: E402
from seaweed import ADMIN, SeaweedS3  # noqa: E402

from casstore.objects import open_store  # noqa: E402
from casstore.runs import RunStore  # noqa: E402

BUCKET = "casstore-bench"
SERVERS = ("seaweedfs", "moto")


@contextlib.contextmanager
def loopback_server(name: str) -> Iterator[tuple[str, int]]:
    """Start S3 server ``name`` on loopback with ``BUCKET``; yield (endpoint URL, its process id)."""
    if name == "moto":
        with LoopbackS3() as moto:
            make_bucket(moto.endpoint_url, BUCKET)
            yield moto.endpoint_url, moto.proc.pid
    elif name == "seaweedfs":
        with SeaweedS3() as weed:
            assert weed.proc is not None and ADMIN.env()["AWS_ACCESS_KEY_ID"] == DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"]
            weed.make_bucket(BUCKET)
            yield weed.endpoint_url, weed.proc.pid
    else:
        raise ValueError(f"unknown S3 server {name!r}; choose from {', '.join(SERVERS)}")


class RequestCounter:
    """Counts the HTTP requests an s3fs/aiobotocore client sends."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()

    def attach(self, fs: Any) -> None:
        fs.connect()
        # once per client: s3fs caches its file systems, so stores of one bucket share one
        fs.s3.meta.events.register("before-send.s3", self._hook, unique_id=f"casstore-bench-{id(self)}")

    def _hook(self, request: Any, **kwargs: Any) -> None:
        method = "COPY" if "x-amz-copy-source" in request.headers else request.method
        self.counts[method] += 1

    def take(self) -> collections.Counter[str]:
        out, self.counts = self.counts, collections.Counter()
        return out


def _write_random(path: Path, size: int) -> None:
    block = 8 << 20
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(block, left)
            f.write(os.urandom(n))
            left -= n


def run(size: int, repeat: int, downloads: bool = False, small_files: int = 0, server: str = "moto",
        packs: bool = True, loose: bool = True, put_sizes: tuple[int, ...] = ()) -> dict[str, Any]:
    """Measure on S3 server ``server``; ``{"times": {name: [s]}, "cpu": {name: [s]}, "requests":
    {name: Counter}}``. With ``small_files``, also log a directory of that many 4 KiB files each
    repetition; with ``packs``, a store of the packs layout beside the loose one; with
    ``put_sizes`` (MiB, packs only), the file's bytes sent from memory as single PUTs of each
    size, as many at once as a pack writer sends packs."""
    import s3fs

    import psutil

    results: dict[str, list[float]] = collections.defaultdict(list)
    cpu: dict[str, list[float]] = collections.defaultdict(list)
    requests: dict[str, collections.Counter[str]] = {}
    peaks: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="casstore-bench-s3-") as tmp, loopback_server(server) as (endpoint, pid):
        os.environ.update(DUMMY_CREDENTIALS)
        os.environ["AWS_ENDPOINT_URL"] = endpoint
        src = Path(tmp) / "weights.bin"
        _write_random(src, size)
        changed = Path(tmp) / "changed" / "weights.bin"
        changed.parent.mkdir()
        shutil.copyfile(src, changed)
        with open(changed, "r+b") as f_out:
            f_out.seek(size // 2)
            f_out.write(os.urandom(min(1 << 20, size // 4)))
        small = Path(tmp) / "small"
        for i in range(small_files):
            (small / f"part{i // 100}").mkdir(parents=True, exist_ok=True)
            (small / f"part{i // 100}" / f"f{i:04d}.bin").write_bytes(os.urandom(4096))

        me, srv = psutil.Process(), psutil.Process(pid)

        def timed(name: str, fn: Any) -> Any:
            """Run ``fn``; record its wall time, the CPU time of both processes and the peak
            resident set of this one while it ran."""
            base = _reset_peak()
            c0, s0 = me.cpu_times(), srv.cpu_times()
            t0 = time.perf_counter()
            out = fn()
            results[name].append(time.perf_counter() - t0)
            if base is not None:
                peaks[name] = max(peaks.get(name, 0), _peak_mib() - base)
            c1, s1 = me.cpu_times(), srv.cpu_times()
            cpu[name].append((c1.user + c1.system - c0.user - c0.system) + (s1.user + s1.system - s0.user - s0.system))
            return out

        # moto assembles a multipart upload in Python: a GiB takes it longer than botocore's
        # default minute to answer, and a retried completion then fails
        peer = s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True, config_kwargs={"read_timeout": 900})
        peer_counter = RequestCounter()
        peer_counter.attach(peer)
        cas_counter = RequestCounter()

        def download(key: str, digest: str, store: Any) -> None:
            timed("peer get_file", lambda: peer.get_file(key, str(Path(tmp) / "peer.out")))
            requests["peer get_file"] = peer_counter.take()
            cas_counter.take()
            timed("casstore get_file", lambda: store.objects.get_file(digest, Path(tmp) / "cas.out"))
            requests["casstore get_file"] = cas_counter.take()
            for name in ("peer.out", "cas.out"):
                (Path(tmp) / name).unlink()

        def put_from_memory(backend: Any, name: str, part: int) -> None:
            from concurrent.futures import ThreadPoolExecutor

            from casstore.objects.packs import PACKS_IN_FLIGHT

            data = src.read_bytes()
            parts = [data[i : i + part] for i in range(0, len(data), part)]
            del data
            cas_counter.take()
            with ThreadPoolExecutor(PACKS_IN_FLIGHT) as pool:
                timed(name, lambda: list(pool.map(lambda ip: backend.put_blob(f"raw-{part}/{ip[0]}", ip[1]),
                                                  enumerate(parts))))
            requests[name] = cas_counter.take()

        for rep in range(repeat):
            key = f"{BUCKET}/peer-{rep}/weights.bin"
            timed("peer put_file", lambda: peer.put_file(str(src), key))
            requests["peer put_file"] = peer_counter.take()

            if loose:
                store = RunStore(open_store(f"s3://{BUCKET}/store-{rep}", layout="loose"))
                cas_counter.attach(store.backend.fs)  # type: ignore[attr-defined]
                experiment = store.get_or_create_experiment("bench")
                first = store.create_run(experiment)
                cas_counter.take()
                entry = timed("casstore fresh", lambda: first.log_file("weights.bin", src))
                requests["casstore fresh"] = cas_counter.take()
                first.end()

                second = store.create_run(experiment)
                cas_counter.take()
                again = timed("casstore re-log", lambda: second.log_file("weights.bin", src))
                requests["casstore re-log"] = cas_counter.take()
                second.end()
                if again.digest != entry.digest:
                    raise SystemExit("re-logged digest differs: the benchmark is broken")

                third = store.create_run(experiment)
                cas_counter.take()
                timed("casstore changed", lambda: third.log_file("weights.bin", changed))
                requests["casstore changed"] = cas_counter.take()
                third.end()

                # downloads: s3fs get_file, and casstore's verified get_file
                if downloads:
                    download(key, entry.digest, store)

            if packs:
                # a new store on S3 opened without a layout: the packs layout
                pstore = RunStore(open_store(f"s3://{BUCKET}/packs-{rep}", stat_cache=False))
                if pstore.objects.config.content_layout != "packs":
                    raise SystemExit("a new store on S3 did not get the packs layout: the benchmark is broken")
                cas_counter.attach(pstore.backend.fs)  # type: ignore[attr-defined]
                pexp = pstore.get_or_create_experiment("bench")
                prun = pstore.create_run(pexp)
                cas_counter.take()
                pentry = timed("packs fresh", lambda: prun.log_file("weights.bin", src))
                requests["packs fresh"] = cas_counter.take()
                prun.end()
                prun = pstore.create_run(pexp)
                cas_counter.take()
                timed("packs changed", lambda: prun.log_file("weights.bin", changed))
                requests["packs changed"] = cas_counter.take()
                prun.end()
                if downloads:
                    if not loose:
                        timed("peer get_file", lambda: peer.get_file(key, str(Path(tmp) / "peer.out")))
                        requests["peer get_file"] = peer_counter.take()
                        (Path(tmp) / "peer.out").unlink()
                    reader = open_store(f"s3://{BUCKET}/packs-{rep}", stat_cache=False)
                    cas_counter.attach(reader.backend.fs)  # type: ignore[attr-defined]
                    cas_counter.take()
                    timed("packs get_file", lambda: reader.get_file(pentry.digest, Path(tmp) / "packs.out"))
                    requests["packs get_file"] = cas_counter.take()
                    (Path(tmp) / "packs.out").unlink()
                for mib in put_sizes:
                    put_from_memory(pstore.backend, f"PUTs of {mib} MiB", mib << 20)
                peer.rm(f"{BUCKET}/packs-{rep}", recursive=True)

            if small_files and loose:
                from casstore.tracking._artifacts import walk_dir

                timed("peer put small files", lambda: peer.put(str(small), f"{BUCKET}/peer-{rep}/small", recursive=True))
                requests["peer put small files"] = peer_counter.take()
                third = store.create_run(experiment)
                cas_counter.take()
                timed("casstore small files", lambda: third.log_files(walk_dir(str(small), "small")))
                requests["casstore small files"] = cas_counter.take()
                third.end()
                peer.rm(f"{BUCKET}/peer-{rep}", recursive=True)

            if peer.exists(key):
                peer.rm(key)
            if loose:
                peer.rm(f"{BUCKET}/store-{rep}", recursive=True)
            line = ", ".join(f"{name} {results[name][-1]:.2f} s" for name in results if len(results[name]) == rep + 1)
            print(f"  rep {rep + 1}/{repeat}: {line}", flush=True)
    return {"times": results, "cpu": cpu, "requests": requests, "peaks": peaks}


def _peak_mib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) >> 10 for line in f if line.startswith("VmHWM"))


def _reset_peak() -> int | None:
    """Reset this process's peak resident set (Linux); return the resident set now in MiB,
    or None where the peak cannot be reset."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _peak_mib()
    except OSError:
        return None


def report(size: int, repeat: int, out: dict[str, Any], server: str = "moto") -> dict[str, float]:
    """Print one server's figures; return its ratios (for the summary across servers)."""
    times = {k: statistics.median(v) for k, v in out["times"].items()}
    cpu = {k: statistics.median(v) for k, v in out["cpu"].items()}
    gib = size / (1 << 30)
    mib = size / (1 << 20)
    print(f"\n{server}: file of {mib:.0f} MiB of random bytes; median of {repeat} repetitions")
    print(f"{'':18} {'seconds':>9} {'MiB/s':>8} {'CPU s':>7} {'+MiB':>6} {'requests':>9} {'req/GiB':>9}   by method")
    raw = tuple(k for k in out["times"] if k.startswith("PUTs of "))
    for name in ("peer put_file", "casstore fresh", "packs fresh", *raw, "casstore re-log", "casstore changed",
                 "packs changed", "peer get_file", "casstore get_file", "packs get_file"):
        if name not in out["requests"]:
            continue
        req = out["requests"][name]
        total = sum(req.values())
        methods = ", ".join(f"{m} {n}" for m, n in sorted(req.items()))
        peak = out["peaks"].get(name)
        print(
            f"{name:18} {times[name]:9.3f} {mib / times[name]:8.1f} {cpu[name]:7.2f} "
            f"{'' if peak is None else peak:>6} {total:9d} {total / gib:9.0f}   {methods}"
        )
    if size < 256 << 20:
        print(f"\n(quick run: the goals below are set for a 256 MiB file; at {mib:.0f} MiB the fixed cost of each request dominates)")
    ratios: dict[str, float] = {}
    if "casstore fresh" in times:
        fresh = ratios["fresh / put_file"] = times["casstore fresh"] / times["peer put_file"]
        relog = ratios["put_file / re-log"] = times["peer put_file"] / times["casstore re-log"]
        print(f"\nfresh / put_file   = {fresh:.2f}  (goal <= 1.0: {'met' if fresh <= 1.0 else 'NOT met'})")
        print(f"put_file / re-log  = {relog:.1f}x (goal >= 5x: {'met' if relog >= 5 else 'NOT met'})")
        print(f"CPU, fresh / put_file = {cpu['casstore fresh'] / cpu['peer put_file']:.2f} (client and server processes)")
    if "casstore get_file" in times:
        get = ratios["get_file / s3fs get_file"] = times["casstore get_file"] / times["peer get_file"]
        print(f"get_file / s3fs    = {get:.2f}  (for information: casstore verifies every chunk)")
    if "packs fresh" in times:
        def reqs(name: str) -> int:
            return sum(out["requests"][name].values())

        def judged(ok: bool, goal: str) -> str:
            if size < 256 << 20:
                return f"(goal {goal}: not judged at {mib:.0f} MiB)"
            return f"(goal {goal}: {'met' if ok else 'MISSED'})"

        peer_req = reqs("peer put_file")
        fresh_p = times["packs fresh"] / times["peer put_file"]
        changed_p = times["peer put_file"] / times["packs changed"]
        ratios["packs fresh / put_file"] = fresh_p
        ratios["put_file / packs changed"] = changed_p
        print(f"\npacks fresh / put_file          = {fresh_p:.2f} {judged(fresh_p <= 1.2, '<= 1.2')}")
        print(f"CPU, packs fresh / put_file     = {cpu['packs fresh'] / cpu['peer put_file']:.2f} "
              "(client and server processes: on a busy machine the time follows it)")
        print(f"packs fresh requests            = {reqs('packs fresh')} against put_file's {peer_req} "
              f"{judged(reqs('packs fresh') <= 2 * peer_req + 12, '<= 2x + 12')}")
        print(f"put_file / packs changed        = {changed_p:.1f}x {judged(changed_p >= 10, '>= 10x')}")
        loose_changed = f" (loose: {reqs('casstore changed')})" if "casstore changed" in out["requests"] else ""
        print(f"packs changed requests          = {reqs('packs changed')}{loose_changed} "
              f"{judged(reqs('packs changed') <= 20, '<= 20')}")
        if "packs get_file" in times:
            get_p = ratios["packs get_file / s3fs get_file"] = times["packs get_file"] / times["peer get_file"]
            print(f"packs get_file / s3fs get_file  = {get_p:.2f}, requests {reqs('packs get_file')} against "
                  f"{reqs('peer get_file')} {judged(get_p <= 1.2, '<= 1.2')}")
    if "casstore small files" in times:
        n = out["small_files"]
        print(f"\n{n} files of 4 KiB (for information)")
        for name in ("peer put small files", "casstore small files"):
            req = out["requests"][name]
            total = sum(req.values())
            methods = ", ".join(f"{m} {c}" for m, c in sorted(req.items()))
            print(f"{name:22} {times[name]:7.3f} s  {total:6d} requests ({total / n:.2f} per file: {methods})")
        small = ratios[f"{n} small files / s3fs put"] = times["casstore small files"] / times["peer put small files"]
        print(f"casstore / s3fs    = {small:.2f} (time)")
    return ratios


def summary(ratios: dict[str, dict[str, float]]) -> None:
    """The ratios of every server side by side."""
    servers = list(ratios)
    rows = list(dict.fromkeys(k for r in ratios.values() for k in r))
    print("\nsummary: casstore against s3fs, by server")
    print(f"{'':28}" + "".join(f"{s:>11}" for s in servers))
    for row in rows:
        print(f"{row:28}" + "".join(f"{ratios[s][row]:11.2f}" if row in ratios[s] else f"{'':11}" for s in servers))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="16 MiB, 2 repetitions")
    parser.add_argument("--size-mib", type=int, default=None, help="file size in MiB (default 256)")
    parser.add_argument("--repeat", type=int, default=None, help="repetitions (default 5)")
    parser.add_argument("--no-packs", action="store_true", help="skip the store of the packs layout")
    parser.add_argument("--no-loose", action="store_true", help="skip the store of the loose layout")
    parser.add_argument("--no-downloads", action="store_true", help="skip the download comparison")
    parser.add_argument("--small-files", type=int, default=None,
                        help="how many 4 KiB files to log as a directory (default 200, --quick 50; 0: skip)")
    parser.add_argument("--put-sizes", default="",
                        help="for information: also send the file from memory as single PUTs of these sizes, "
                             "comma-separated MiB (e.g. 8,16,32,64), as many at once as packs are sent")
    parser.add_argument("--server", choices=(*SERVERS, "both"), default="both",
                        help="the S3 server on loopback (default: both, SeaweedFS first)")
    args = parser.parse_args(argv)
    size = (args.size_mib or (16 if args.quick else 256)) << 20
    repeat = args.repeat or (2 if args.quick else 5)
    small = args.small_files if args.small_files is not None else (50 if args.quick else 200)
    ratios = {}
    for server in SERVERS if args.server == "both" else (args.server,):
        print(f"{server}:", flush=True)
        out = run(size, repeat, downloads=not args.no_downloads, small_files=small, server=server,
                  packs=not args.no_packs, loose=not args.no_loose,
                  put_sizes=tuple(int(x) for x in args.put_sizes.split(",") if x.strip()))
        out["small_files"] = small
        ratios[server] = report(size, repeat, out, server)
    if len(ratios) > 1:
        summary(ratios)


if __name__ == "__main__":
    main()
