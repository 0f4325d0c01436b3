"""Faults between casstore and S3: a loopback proxy in front of the S3 server fails,
drops, stalls or loses the replies of a share of requests. Puts and gets succeed
through retries; races stay exact; an upload cut off midway (by the network, or by
SIGKILL) leaves only whole, verified objects, and running it again sends only what
is missing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from blake3 import blake3
from s3_server import FaultProxy, S3Target

from casstore.backend import Backend, open_backend
from casstore.exceptions import StoreUnavailableError
from casstore.objects import ObjectStore, open_store
from casstore.objects.packs import parse_pack_tail
from casstore.objects.recipes import Recipe
from casstore.runs import RunStore, open_run_store
from casstore.testing.conformance import BackendConformance

REPO = Path(__file__).resolve().parents[1]


def _random_file(path: Path, size: int, seed: int) -> bytes:
    import random

    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return data


def _assert_only_whole_objects(direct: Backend) -> set[str]:
    """Every chunk and every pack hashes to its name; every recipe's chunks are all there (as
    objects, or in a pack that its header says holds them). Returns the chunk digests."""
    chunks = set()
    for key in direct.list("chunks/"):
        name = key.rsplit("/", 1)[-1]
        assert blake3(direct.get(key)).hexdigest() == name, f"{key} is not whole"
        chunks.add(name)
    for key in direct.list("packs/"):
        data = direct.get(key)
        assert blake3(data).hexdigest() == key.rsplit("/", 1)[-1], f"{key} is not whole"
        entries = parse_pack_tail(data, len(data), key)
        assert not isinstance(entries, int)
        for digest, offset, length in entries:
            assert blake3(data[offset : offset + length]).hexdigest() == digest
            chunks.add(digest)
    for key in direct.list("files/"):
        recipe = Recipe.decode(direct.get(key), key)
        missing = [d for d, _ in recipe.chunks if d not in chunks]
        assert not missing, f"recipe {key} is visible but {len(missing)} of its chunks are not"
    return chunks


def test_puts_and_gets_succeed_through_injected_faults(
    s3_env: S3Target, s3_proxy: FaultProxy, tmp_path: Path, store_layout: str
) -> None:
    url = s3_env.fresh_url()
    store = open_run_store(url, {"endpoint_url": s3_proxy.endpoint_url, "max_attempts": 12})
    s3_proxy.fail_rate, s3_proxy.drop_rate, s3_proxy.lose_reply_rate = 0.15, 0.05, 0.05
    handle = store.create_run(store.get_or_create_experiment("faults"))
    big = _random_file(tmp_path / "big.bin", 5 << 20, seed=1)
    handle.log_file("big.bin", tmp_path / "big.bin")
    for i in range(8):
        handle.log_bytes(f"small/{i}.txt", f"small file {i}".encode())
        handle.log_param(f"p{i}", str(i))
    digest = handle.end()

    view = store.get_run(handle.run_id)
    assert view.digest == digest and view.params == {f"p{i}": str(i) for i in range(8)}
    store.objects.get_file(view.artifacts["big.bin"].digest, tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == big
    for i in range(8):
        assert store.artifact_bytes(handle.run_id, view.artifacts[f"small/{i}.txt"]) == f"small file {i}".encode()
    assert sum(s3_proxy.faults.values()) >= 20, f"too few faults were injected to show anything: {s3_proxy.faults}"
    assert {"fail", "drop", "lose"} <= set(s3_proxy.faults)
    _assert_only_whole_objects(open_backend(url))


def test_races_stay_exact_when_replies_are_lost_or_late(s3_env: S3Target, s3_proxy: FaultProxy) -> None:
    """The conformance suite's thread race, through a proxy that loses replies (the
    request landed, the sender cannot know) and holds requests past the client's timeout."""
    opts = {"endpoint_url": s3_proxy.endpoint_url, "max_attempts": 12, "config_kwargs": {"read_timeout": 0.5}}
    backend = open_backend(s3_env.fresh_url(), opts)
    s3_proxy.lose_reply_rate, s3_proxy.stall_rate, s3_proxy.stall_seconds = 0.2, 0.03, 1.0
    BackendConformance().test_put_if_absent_under_threads_has_exactly_one_winner(backend)
    assert s3_proxy.faults["lose"] > 0 and s3_proxy.faults["stall"] > 0, s3_proxy.faults


def _upload_again_sends_only_the_rest(
    objects: ObjectStore, s3_proxy: FaultProxy, direct: Backend, src: Path, data: bytes
) -> None:
    present = _assert_only_whole_objects(direct)
    assert list(direct.list("files/")) == [], "a recipe was published for an unfinished upload"
    s3_proxy.reset_counts()
    digest, size = objects.put_file(src)
    n_chunks = len(objects.recipe(digest).chunks)
    assert 0 < len(present) < n_chunks, "the upload was not cut off midway"
    assert s3_proxy.count("PUT", "chunks") == n_chunks - len(present)
    assert objects.get_bytes(digest) == data and size == len(data)


def test_an_upload_cut_off_by_the_network_completes_when_run_again(
    s3_env: S3Target, s3_proxy: FaultProxy, tmp_path: Path
) -> None:
    url = s3_env.fresh_url()
    """Counted in chunk objects: a loose store (a packed one: tests/test_packs.py)."""
    objects = open_store(url, {"endpoint_url": s3_proxy.endpoint_url, "max_attempts": 2}, max_in_flight=4, layout="loose")
    data = _random_file(tmp_path / "w.bin", 10 << 20, seed=2)
    s3_proxy.forward_limit = 3  # then the network goes away
    with pytest.raises(StoreUnavailableError, match="after 2 attempts"):
        objects.put_file(tmp_path / "w.bin")
    s3_proxy.forward_limit = None
    s3_proxy.wait_idle()
    _upload_again_sends_only_the_rest(objects, s3_proxy, open_backend(url), tmp_path / "w.bin", data)


_CHILD = """
import sys
from casstore.runs import open_run_store
store = open_run_store(sys.argv[1], {"endpoint_url": sys.argv[2]})
store.open_run(sys.argv[3]).log_file("model/weights.bin", sys.argv[4])
print("finished", flush=True)
"""


def test_a_writer_killed_midway_leaves_whole_objects_and_a_rerun_completes(
    s3_env: S3Target, s3_proxy: FaultProxy, tmp_path: Path
) -> None:
    """Counted in chunk objects: a loose store (a packed one: tests/test_packs.py)."""
    url = s3_env.fresh_url()
    store = RunStore(open_store(url, {"endpoint_url": s3_proxy.endpoint_url}, layout="loose"))
    run_id = store.create_run(store.get_or_create_experiment("killed")).run_id
    data = _random_file(tmp_path / "weights.bin", 10 << 20, seed=3)
    s3_proxy.reset_counts()
    s3_proxy.forward_limit = 6  # the writer's probe (two PUTs) and a few chunks, then it stalls, retrying: kill it there
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, url, s3_proxy.endpoint_url, run_id, str(tmp_path / "weights.bin")],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while s3_proxy.count("PUT", "chunks") < 4 and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert child.poll() is None, f"the writer exited early: {child.communicate()}"
        time.sleep(0.2)  # let it reach the dropped requests
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.communicate()
    s3_proxy.forward_limit = None
    time.sleep(0.2)
    s3_proxy.wait_idle()

    direct = open_backend(url)
    assert "model/weights.bin" not in store.get_run(run_id).artifacts
    handle = store.open_run(run_id)
    objects = handle.store.objects
    present = _assert_only_whole_objects(direct)
    s3_proxy.reset_counts()
    entry = handle.log_file("model/weights.bin", tmp_path / "weights.bin")
    n_chunks = len(objects.recipe(entry.digest).chunks)
    assert 0 < len(present) < n_chunks
    assert s3_proxy.count("PUT", "chunks") == n_chunks - len(present)
    handle.end()
    assert store.objects.get_bytes(store.get_run(run_id).artifacts["model/weights.bin"].digest) == data
