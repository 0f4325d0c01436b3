"""Many writers on one S3 store: several processes log to the same run at once through
the S3 server (same paths with different content, same content, distinct paths).
Exactly one binding per path wins, nothing is lost, everything verifies."""

from __future__ import annotations

import multiprocessing
import random
from typing import Any

import pytest
from blake3 import blake3

from casstore.exceptions import ImmutableArtifactError
from casstore.runs import open_run_store

#: every test here stores content: it runs on each content layout (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("store_layout")

N_WRITERS = 4
N_PATHS = 6


def _content(kind: str, writer: int, i: int) -> bytes:
    """Deterministic content; every third file spans several chunks."""
    size = 1_500_000 if i % 3 == 0 else 3_000 + 17 * i
    seed = f"{kind}/{i}" if kind == "shared" else f"{kind}/{writer}/{i}"
    return random.Random(seed).randbytes(size)


def _writer(url: str, run_id: str, writer: int, barrier: Any, results: Any) -> None:
    """One process: log contested, shared and own paths into the same run, in an order of its own."""
    report: dict[str, Any] = {"writer": writer, "won": [], "lost": {}, "error": None}
    try:
        handle = open_run_store(url).open_run(run_id)
        jobs = [(kind, i) for kind in ("contested", "shared", "own") for i in range(N_PATHS)]
        random.Random(writer).shuffle(jobs)
        barrier.wait(timeout=120)
        for kind, i in jobs:
            path = f"{kind}/{writer}/{i}.bin" if kind == "own" else f"{kind}/{i}.bin"
            try:
                handle.log_bytes(path, _content(kind, writer, i))
                if kind == "contested":
                    report["won"].append(path)
            except ImmutableArtifactError as e:
                report["lost"][path] = (e.existing, e.new)
    except BaseException as e:  # reported: the parent fails with the reason
        report["error"] = f"{type(e).__name__}: {e}"
        barrier.abort()
    results.put(report)


@pytest.mark.slow
def test_processes_logging_to_one_run_on_s3_lose_nothing(s3_url: str) -> None:
    store = open_run_store(s3_url)
    run_id = store.create_run(store.get_or_create_experiment("many-writers")).run_id
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(N_WRITERS)
    results = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(s3_url, run_id, w, barrier, results)) for w in range(N_WRITERS)]
    for p in procs:
        p.start()
    try:
        reports = [results.get(timeout=300) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    assert [r["error"] for r in reports] == [None] * N_WRITERS
    digest = {("contested", w, i): blake3(_content("contested", w, i)).hexdigest() for w in range(N_WRITERS) for i in range(N_PATHS)}

    view = store.get_run(run_id)
    expected_paths = {f"{k}/{i}.bin" for k in ("contested", "shared") for i in range(N_PATHS)}
    expected_paths |= {f"own/{w}/{i}.bin" for w in range(N_WRITERS) for i in range(N_PATHS)}
    assert set(view.artifacts) == expected_paths, "a path is missing or unexpected"

    # same path, different content: exactly one writer won each, the others were told who did
    for i in range(N_PATHS):
        path = f"contested/{i}.bin"
        winners = [r["writer"] for r in reports if path in r["won"]]
        assert len(winners) == 1, f"{path}: {len(winners)} writers won"
        bound = view.artifacts[path].digest
        assert bound == digest[("contested", winners[0], i)]
        for r in reports:
            if r["writer"] != winners[0]:
                assert r["lost"][path] == (bound, digest[("contested", r["writer"], i)])
    # same content: nobody was refused
    assert not [p for r in reports for p in r["lost"] if not p.startswith("contested/")]

    # sealed and read back from S3: every file verifies and is what its writer logged
    run_digest = store.open_run(run_id).end()
    sealed = store.get_run(run_id)
    assert sealed.digest == run_digest and set(sealed.artifacts) == expected_paths
    for path, entry in sealed.artifacts.items():
        kind, *rest = path.split("/")
        writer = int(rest[0]) if kind == "own" else 0
        i = int(rest[-1].split(".")[0])
        if kind == "contested":
            writer = next(r["writer"] for r in reports if path in r["won"])
        data = store.artifact_bytes(run_id, entry)  # verified: from its record, or chunk by chunk and whole
        assert data == _content(kind, writer, i), f"{path} does not hold what was logged"
        assert entry.size == len(data)
