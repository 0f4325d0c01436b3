"""Reliability figures for docs/reliability.md: kills, flipped bytes and gc after damage.

Not a timed benchmark: it counts outcomes, and prints them as markdown.

1. **SIGKILL during ingest**, local and S3 (moto's server on loopback): a child process
   logs a set of files and then metric points into one run, printing each point's index
   once ``log_metric`` has returned; it is killed with SIGKILL at a random instant. Then:
   ``verify --all`` (corrupt or missing objects), the acknowledged points the run shows
   (read on the same machine, whose write-ahead logs the next reader merges), and a
   resume that logs the same files again: how many objects it wrote that were already
   stored (``resent``), and whether the run then verifies whole.
2. **One byte flipped** in every object of a populated store (each chunk, recipe, model
   entry, manifest, record of every kind, registry record and the config), one object at
   a time, at a few random positions: whether ``verify --all`` names it, whether any read
   through the API returned a value other than the one written (a *wrong value served*),
   and how many items (artifacts, params, tags, metric series, models, registry versions)
   became unreadable.
3. **gc after damage**: each kind of damage to each live reference (deleted, truncated, a
   digest changed, a byte flipped), then two gc runs with no grace period; how many
   chunks that live runs need were deleted.

Run: ``python benchmarks/reliability.py`` (``--quick`` for fewer trials).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the loopback S3 server of the tests

from casstore.exceptions import CasstoreError  # noqa: E402
from casstore.maintenance.gc import collect_garbage  # noqa: E402
from casstore.maintenance.scan import scan_store  # noqa: E402
from casstore.maintenance.verify import verify_store  # noqa: E402
from casstore.objects import ChunkerParams, open_store  # noqa: E402
from casstore.registry import Registry  # noqa: E402
from casstore.runs import RunStore, layout, open_run_store  # noqa: E402
from casstore.runs.batches import batch_key, batch_number, batches_prefix  # noqa: E402

SMALL = ChunkerParams(min_size=16 << 10, avg_size=64 << 10, max_size=256 << 10)

CHILD = r"""
import random, sys
from casstore.objects import ChunkerParams, open_store
from casstore.runs import RunStore
url, run_id, folder = sys.argv[1], sys.argv[2], sys.argv[3]
store = RunStore(open_store(url))
h = store.open_run(run_id)
files = sorted(f for f in __import__("os").listdir(folder))
h.log_files([(f, folder + "/" + f) for f in files])
print("files", flush=True)
for i in range(100000):
    h.log_metric("m", float(i), step=i)
    print(i, flush=True)
"""


def make_files(folder: Path, rng: random.Random, n: int = 6) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    shared = rng.randbytes(1 << 20)
    for i in range(n):
        size = rng.randrange(1 << 20, 3 << 20)
        body = rng.randbytes(size)
        (folder / f"f{i}.bin").write_bytes(shared + body if i % 2 else body)


def kill_trials(url_of: Any, trials: int, rng: random.Random, env: dict[str, str], where: str,
                latest: float) -> dict[str, Any]:
    out: Counter[str] = Counter()
    resent_total = sent_total = 0
    for t in range(trials):
        url = url_of(t)
        store = RunStore(open_store(url, chunker=SMALL))
        run_id = store.create_run("0").run_id
        folder = Path(tempfile.mkdtemp(prefix="rel-files-"))
        make_files(folder, rng)
        p = subprocess.Popen([sys.executable, "-c", CHILD, url, run_id, str(folder)], env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        delay = rng.uniform(0.3, latest)  # a random instant: while storing files, or logging points
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        stdout, _ = p.communicate()
        lines = stdout.split()
        acked = {int(x) for x in lines if x.isdigit()}
        out["trials"] += 1
        out["killed during files"] += "files" not in lines
        out["acknowledged points"] += len(acked)
        reader = RunStore(open_store(url))
        report = verify_store(reader)
        out["corrupt or missing objects"] += len(report.problems)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            shown = {int(v) for k, v, _s, _ts in reader.get_run(run_id).points if k == "m"}
        out["lost acknowledged points"] += len(acked - shown)
        # resume: the same files again; count writes of objects that were already there
        before = set(reader.backend.list("chunks/")) | set(reader.backend.list("files/"))
        h = reader.open_run(run_id)
        created = _writes_of(reader)
        h.log_files([(f.name, str(f)) for f in sorted(folder.iterdir())])
        resent_total += sum(1 for k in created if k in before)
        sent_total += len(created)
        h.end()
        out["runs not whole after resume"] += not verify_store(reader, [run_id]).ok
        shutil.rmtree(folder, ignore_errors=True)
    res = dict(out)
    res["objects written by resumes"] = sent_total
    res["of them already stored (resent)"] = resent_total
    res["where"] = where
    return res


def _writes_of(store: RunStore) -> list[str]:
    """From now on, the keys of the objects ``store`` writes content to (a ``put_blob`` that
    wrote; one that found the object there only freshens it), on every backend."""
    backend = store.backend
    written: list[str] = []
    put = backend.put_blob

    def recording(key: str, data: bytes | memoryview) -> bool:
        wrote = put(key, data)
        if wrote:
            written.append(key)
        return wrote

    backend.put_blob = recording  # type: ignore[method-assign]
    return written


# ---- a populated store -------------------------------------------------------------------------


def populate(root: Path) -> tuple[RunStore, dict[str, Any]]:
    """Runs with every record kind, inline and stored artifacts sharing chunks, a model,
    registry versions and aliases; returns the store and what every item reads as."""
    rng = random.Random(11)
    store = RunStore(open_store(str(root), chunker=SMALL), metric_flush_points=3)
    exp = store.get_or_create_experiment("reliability")
    shared = rng.randbytes(300_000)
    runs = []
    for r in range(2):
        h = store.create_run(exp, run_name=f"r{r}", tags={"origin": "bench"})
        h.log_param("lr", str(0.1 * (r + 1)))
        h.set_tag("team", "a")
        for i in range(6):
            h.log_metric("loss", 1.0 / (i + 1), step=i)
        h.log_bytes("notes.txt", f"small note {r}".encode())
        h.log_bytes("data/shared.bin", shared)
        h.log_bytes("data/own.bin", rng.randbytes(200_000))
        w = store.objects.put_bytes(rng.randbytes(150_000))
        model = h.add_model("model", {"v": 1, "kind": "model", "name": "model", "run_id": h.run_id, "created": "",
                                      "flavors": {"x": {}}, "files": {"w.bin": {"digest": w.digest, "size": w.size}}})
        if r == 0:
            h.end()
        runs.append((h.run_id, model))
    reg = Registry(store.backend)
    reg.create_version("fraud", runs[0][1], source=f"runs:/{runs[0][0]}/model")
    reg.set_alias("fraud", "champion", 1)
    return store, snapshot(store)


def snapshot(store: RunStore) -> dict[str, Any]:
    """Every item's value as read through the API: ``item -> value`` (an exception type name
    for an item that cannot be read)."""
    items: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ids = store.list_run_ids()
        except CasstoreError as e:
            return {"*": type(e).__name__}
        for run_id in ids:
            try:
                view = store.get_run(run_id)
            except CasstoreError as e:
                items[f"{run_id}"] = type(e).__name__
                continue
            for k, v in view.params.items():
                items[f"{run_id} param {k}"] = v
            for k, v in view.tags.items():
                items[f"{run_id} tag {k}"] = v
            series = defaultdict(list)
            for k, v, s, _t in view.points:
                series[k].append((s, v))
            for k, pts in series.items():
                items[f"{run_id} metric {k}"] = sorted(pts)
            for path, entry in view.artifacts.items():
                try:
                    items[f"{run_id} artifact {path}"] = store.artifact_bytes(run_id, entry)
                except CasstoreError as e:
                    items[f"{run_id} artifact {path}"] = type(e).__name__
            for name, ref in view.models.items():
                try:
                    entry = store.load_model_entry(ref.digest)
                    items[f"{run_id} model {name}"] = (ref.digest, store.objects.get_bytes(entry["files"]["w.bin"]["digest"]))
                except CasstoreError as e:
                    items[f"{run_id} model {name}"] = type(e).__name__
        try:
            reg = Registry(store.backend)
            mv = reg.get_version_by_alias("fraud", "champion")
            items["registry fraud@champion"] = (mv.version, mv.model_digest, mv.source)
        except CasstoreError as e:
            items["registry fraud@champion"] = type(e).__name__
    return items


def kind_of(key: str) -> str:
    parts = key.split("/")
    if parts[0] == "runs":
        kind = parts[2]
        if kind.startswith(("batch-", "last-")):  # numbered: batch-<n>, and the witness last-<n>
            kind = "batches" if kind.startswith("batch-") else "batch witness"
        return f"run record: {kind}"
    if parts[0] == "registry":
        return f"registry: {parts[2]}"
    if parts[0] == "experiments":
        return "experiment record"
    return {"chunks": "chunk", "files": "recipe", "models": "model entry", "casstore.json": "config"}.get(parts[0], parts[0])


def flip_trials(work: Path, positions: int, rng: random.Random) -> list[tuple[str, int, int, int, int, int]]:
    """Per object kind: (kind, flips, found by verify (it fails), the damaged object named,
    wrong values served, max items unreadable)."""
    root = work / "flips"
    store, truth = populate(root)
    keys = [k for k in store.backend.list("") if not k.startswith(("gc/", "wal/", "hints/"))]
    stats: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    for key in sorted(keys):
        path = root / key
        original = path.read_bytes()
        for _ in range(positions):
            data = bytearray(original)
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
            path.write_bytes(bytes(data))
            s = stats[kind_of(key)]
            s[0] += 1
            try:
                fresh = RunStore(open_store(str(root)))
                report = verify_store(fresh)
                found, named = not report.ok, any(p.object == key for p in report.problems)
                now = snapshot(fresh)
            except CasstoreError:  # the store cannot be opened at all: found, and nothing served
                found, named, now = True, True, {}
            s[1] += found
            s[2] += named
            # a value served that differs from the one written (an error in its place is no value)
            wrong = [k for k, v in now.items() if k in truth and v != truth[k] and not _is_error(v)]
            s[3] += len(wrong)
            lost = sum(1 for k in truth if k not in now or (now[k] != truth[k] and _is_error(now[k])))
            s[4] = max(s[4], lost)
            path.write_bytes(original)
    return [(k, *v) for k, v in sorted(stats.items())]


def _is_error(v: object) -> bool:
    return isinstance(v, str) and v.endswith("Error")


def config_flips(work: Path) -> tuple[int, int, int]:
    """Every single-bit flip of ``casstore.json``: (flips, refused at open, opened and read
    back every item as written)."""
    root = work / "config"
    store, truth = populate(root)
    path = root / "casstore.json"
    original = path.read_bytes()
    flips = refused = same = 0
    for i in range(len(original)):
        for bit in range(8):
            data = bytearray(original)
            data[i] ^= 1 << bit
            path.write_bytes(bytes(data))
            flips += 1
            try:
                now = snapshot(RunStore(open_store(str(root), create=False)))
            except CasstoreError:
                refused += 1
                continue
            same += now == truth
    path.write_bytes(original)
    return flips, refused, same


def gc_trials(work: Path) -> list[tuple[str, str, int, int, int]]:
    """(what, damage, gc runs blocked, live chunks deleted, objects deleted)."""
    rows = []
    damages = {
        "deleted": lambda d: None,
        "truncated": lambda d: d[: len(d) // 2],
        "digest changed": lambda d: _change_digest(d),
        "byte flipped": lambda d: d[:7] + bytes([d[7] ^ 0x10]) + d[8:],
    }
    for what in ("recipe", "artifact record", "model reference", "batch record", "last batch record", "seal",
                 "model entry", "registry version", "registry model"):
        for how, damage in damages.items():
            root = work / f"gc-{what}-{how}".replace(" ", "_")
            store, _truth = populate(root)
            lay = store.objects.layout
            run0, run1 = sorted(store.list_run_ids())
            sealed = run0 if store.seal_record(run0) else run1
            open_ = run1 if sealed == run0 else run0
            view = store.get_run(open_)
            needed = set()
            for a in view.artifacts.values():
                if not a.inline:
                    needed.update(store.objects.chunk_digests(a.digest))
            for rid in (run0, run1):
                for ref in store.get_run(rid).models.values():
                    e = store.load_model_entry(ref.digest)
                    needed.update(store.objects.chunk_digests(e["files"]["w.bin"]["digest"]))
                for a in store.get_run(rid).artifacts.values():
                    if not a.inline:
                        needed.update(store.objects.chunk_digests(a.digest))
            target = {
                "recipe": lay.recipe_key(view.artifacts["data/own.bin"].digest),
                "artifact record": layout.artifact_key(open_, "data/own.bin"),
                "model reference": layout.model_ref_key(open_, "model"),
                "batch record": batch_key(open_, 1),
                "last batch record": batch_key(open_, max(
                    n for k in store.backend.list(batches_prefix(open_)) if (n := batch_number(k)) is not None)),
                "seal": layout.seal_key(sealed),  # it holds the run's manifest
                "model entry": lay.model_key(store.get_run(sealed).models["model"].digest),
                "registry version": f"registry/{layout.name_key('fraud')}/versions/{1:010d}",
                "registry model": f"registry/{layout.name_key('fraud')}/model",
            }[what]
            # a deleted run's data is garbage: gc has something to collect
            g = store.create_run("0")
            g.log_bytes("garbage.bin", random.Random(9).randbytes(400_000))
            g.end()
            store.delete_run(g.run_id)
            _age(root)
            collect_garbage(store.backend, grace=0, slack=0)
            data = store.backend.get(target)
            store.backend.delete(target)
            new = damage(data)
            if new is not None:
                store.backend.put_blob(target, new)
            blocked = deleted = 0
            for _ in range(2):
                r = collect_garbage(store.backend, grace=0, slack=0)
                blocked += not r.ok
                deleted += r.deleted_total
            left = scan_store(store.backend, lay).content["chunks"]
            rows.append((what, how, blocked, len(needed - left), deleted))
    return rows


def _change_digest(data: bytes) -> bytes:
    m = re.search(rb"[0-9a-f]{64}", data)
    if m is None:
        return data[:-1]
    i = m.start() + 5
    return data[:i] + (b"0" if data[i:i + 1] != b"0" else b"1") + data[i + 1:]


def _age(root: Path) -> None:
    past = time.time() - 3600
    for kind in ("chunks", "files", "models"):
        for p in (root / kind).rglob("*"):
            if p.is_file():
                os.utime(p, (past, past))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="few trials (a smoke run)")
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="casstore-reliability-"))
    env = dict(os.environ, CASSTORE_CACHE_DIR=str(work / "cache"))
    os.environ["CASSTORE_CACHE_DIR"] = str(work / "cache")  # the reader is on the writer's machine
    local_trials, s3_trials, positions = (4, 2, 1) if args.quick else (40, 20, 3)
    t0 = time.time()
    print(f"# casstore reliability figures (seed {args.seed}, {'quick' if args.quick else 'full'})\n")

    print("## SIGKILL during ingest\n")
    print("| store | trials | killed while storing files | acknowledged points | lost acknowledged points "
          "| corrupt or missing objects | objects written by resumes | of them already stored | runs not whole after resume |")
    print("|---|---|---|---|---|---|---|---|---|")
    results = [kill_trials(lambda t: str(work / f"kill-local-{t}"), local_trials, rng, env, "local", 4.0)]
    from s3_server import DUMMY_CREDENTIALS, LoopbackS3, make_bucket

    with LoopbackS3() as server:
        make_bucket(server.endpoint_url, "reliability")
        s3env = dict(env, **DUMMY_CREDENTIALS, AWS_ENDPOINT_URL=server.endpoint_url)
        os.environ.update(DUMMY_CREDENTIALS, AWS_ENDPOINT_URL=server.endpoint_url)
        results.append(kill_trials(lambda t: f"s3://reliability/kill-{t}", s3_trials, rng, s3env, "S3 (moto)", 12.0))
    for r in results:
        print(f"| {r['where']} | {r['trials']} | {r.get('killed during files', 0)} | {r.get('acknowledged points', 0)} "
              f"| {r.get('lost acknowledged points', 0)} | {r.get('corrupt or missing objects', 0)} "
              f"| {r['objects written by resumes']} | {r['of them already stored (resent)']} "
              f"| {r.get('runs not whole after resume', 0)} |")

    print("\n## One byte flipped in every object\n")
    print("| object kind | flips | found by `verify --all` (exit 1) | the flipped object named | wrong values served "
          "| most items unreadable by one flip |")
    print("|---|---|---|---|---|---|")
    total = [0, 0, 0, 0]
    for kind, flips, found, named, wrong, lost in flip_trials(work, positions, rng):
        for j, v in enumerate((flips, found, named, wrong)):
            total[j] += v
        print(f"| {kind} | {flips} | {found} ({100 * found / flips:.0f}%) | {named} | {wrong} | {lost} |")
    print(f"| **all** | {total[0]} | {total[1]} ({100 * total[1] / total[0]:.1f}%) | {total[2]} | {total[3]} | |")
    flips, refused, same = config_flips(work)
    print(f"\nEvery single-bit flip of `casstore.json`: {flips} flips, {refused} refused when the store is opened, "
          f"{flips - refused} opened; of these, {same} read every item back as written.")

    print("\n## gc after damage to a live reference\n")
    print("| damaged | damage | gc runs blocked (of 2) | live chunks deleted | objects deleted |")
    print("|---|---|---|---|---|")
    for what, how, blocked, lost, deleted in gc_trials(work):
        print(f"| {what} | {how} | {blocked} | {lost} | {deleted} |")
    print(f"\n({time.time() - t0:.0f} s)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
