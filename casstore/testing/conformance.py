"""The backend conformance suite: what every casstore backend must do.

A backend joins by subclassing :class:`BackendConformance` in a test module and
supplying a ``backend`` fixture that yields a handle on a fresh, empty store::

    import functools, pytest
    from casstore.backend import open_backend
    from casstore.testing.conformance import BackendConformance

    class TestMyBackend(BackendConformance):
        @pytest.fixture
        def backend(self, tmp_path):
            b = open_backend(f"my://bucket/{tmp_path.name}")
            yield b
            b.close()

        # optional: a picklable zero-argument callable that opens a new handle on the
        # SAME store; it is called in spawned child processes by the multi-process race
        # test (skipped without it), so build it from a URL and storage options
        @pytest.fixture
        def backend_factory(self, backend):
            return functools.partial(open_backend, backend.url, {"endpoint_url": "..."})

        # optional: a local directory that holds the store; the invalid-key tests check
        # that nothing in it outside the store is created or changed
        @pytest.fixture
        def sandbox(self, tmp_path):
            return tmp_path

Tests branch on the backend's capability flags (``supports_atomic_create``,
``durable``, ``concurrency``), never on its class. The checks here use only the
public contract of :class:`casstore.backend.Backend`, compared with plain Python
models (a dict, a set), never with another backend.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

try:
    import pytest
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("the conformance suite needs pytest and hypothesis: pip install 'casstore[test]'") from e

from casstore.backend.base import Backend
from casstore.exceptions import CasstoreError, InvalidInputError, ObjectNotFoundError
from casstore.testing import strategies as cst
from casstore.testing._race import put_if_absent_worker
from casstore.testing.processes import run_racers

__all__ = ["BackendConformance"]

# Each example leaves the backend as it found it, and the subclasses that run a test
# share nothing, so a function-scoped fixture and several executors are both fine here.
_SLOW_IO = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.differing_executors],
)


def _snapshot(root: Path | None, exclude: str | None) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` except inside ``exclude``: path -> (size, mtime_ns)."""
    if root is None:
        return {}
    out: dict[str, tuple[int, int]] = {}
    for dirpath, _dirs, files in os.walk(root):
        if exclude and (dirpath == exclude or dirpath.startswith(exclude + os.sep)):
            continue
        for name in files:
            p = os.path.join(dirpath, name)
            try:
                st_ = os.stat(p)
            except FileNotFoundError:
                continue
            out[p] = (st_.st_size, st_.st_mtime_ns)
    return out


class BackendConformance:
    """The contract of :class:`casstore.backend.Backend`, as tests. Subclass and supply fixtures."""

    # ---- fixtures a backend supplies --------------------------------------------------

    @pytest.fixture
    def backend(self) -> Iterator[Backend]:
        raise NotImplementedError("a BackendConformance subclass must define a `backend` fixture")

    @pytest.fixture
    def backend_factory(self) -> Callable[[], Backend] | None:
        """A picklable callable opening another handle on the store of ``backend``, or None."""
        return None

    @pytest.fixture
    def sandbox(self) -> Path | None:
        """A local directory that contains the store, or None."""
        return None

    # ---- create-if-absent ---------------------------------------------------------------

    def test_put_if_absent_creates_once_and_keeps_the_first_bytes(self, backend: Backend) -> None:
        assert backend.put_if_absent("runs/r1/meta", b"first") is True
        assert backend.put_if_absent("runs/r1/meta", b"second") is False
        assert backend.put_if_absent("runs/r1/meta", b"first") is False
        assert backend.get("runs/r1/meta") == b"first"

    def test_put_if_absent_stores_empty_and_binary_objects(self, backend: Backend) -> None:
        data = bytes(range(256)) * 3
        assert backend.put_if_absent("e/empty", b"") is True
        assert backend.put_if_absent("e/binary", data) is True
        assert backend.get("e/empty") == b""
        assert backend.get("e/binary") == data
        assert backend.info("e/empty").size == 0

    def test_put_if_absent_under_threads_has_exactly_one_winner(self, backend: Backend) -> None:
        if not backend.supports_atomic_create:
            pytest.skip("backend does not claim an atomic create-if-absent")
        n_threads, rounds = 16, 8
        barrier = threading.Barrier(n_threads)
        won: dict[tuple[int, int], bool] = {}
        errors: list[BaseException] = []

        def token(t: int, r: int) -> bytes:
            return f"thread {t} round {r};".encode() * 2000  # tens of KiB: a wide race window

        def racer(t: int) -> None:
            try:
                for r in range(rounds):
                    barrier.wait(timeout=60)
                    won[(t, r)] = backend.put_if_absent(f"race/k{r}", token(t, r))
            except BaseException as e:
                errors.append(e)
                barrier.abort()

        threads = [threading.Thread(target=racer, args=(t,)) for t in range(n_threads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=120)
        assert not errors, errors
        for r in range(rounds):
            winners = [t for t in range(n_threads) if won[(t, r)]]
            assert len(winners) == 1, f"round {r}: {len(winners)} threads won create-if-absent"
            assert backend.get(f"race/k{r}") == token(winners[0], r), "stored bytes are not the winner's"

    def test_put_if_absent_under_processes_has_exactly_one_winner(
        self, backend: Backend, backend_factory: Callable[[], Backend] | None
    ) -> None:
        if not backend.supports_atomic_create:
            pytest.skip("backend does not claim an atomic create-if-absent")
        if backend_factory is None:
            pytest.skip("no backend_factory fixture: the store cannot be opened from another process")
        n_procs, rounds = 4, 24
        keys = [f"prace/k{r}" for r in range(rounds)]
        # a wakeup from the barrier is staggered by up to a millisecond or so: objects of
        # a MiB keep the race window open that long
        tokens = [f"process {i};".encode() * 100_000 for i in range(n_procs)]
        reports = run_racers(put_if_absent_worker, [(backend_factory, keys, tok) for tok in tokens])
        failures = [err for _tok, _won, err in reports if err]
        assert not failures, f"a racing process failed: {failures}"
        won = {tok: w for tok, w, _err in reports}
        for r, key in enumerate(keys):
            winners = [tok for tok in tokens if won[tok][r]]
            assert len(winners) == 1, f"{key}: {len(winners)} processes won create-if-absent"
            assert backend.get(key) == winners[0], f"{key}: stored bytes are not the winner's"

    # ---- idempotent blobs -----------------------------------------------------------------

    def test_put_blob_is_idempotent(self, backend: Backend) -> None:
        data = os.urandom(4096)
        assert backend.put_blob("chunks/ab/cd/x", data) is True
        assert backend.put_blob("chunks/ab/cd/x", data) is False
        assert backend.put_blob("chunks/ab/cd/x", memoryview(data)) is False
        assert backend.get("chunks/ab/cd/x") == data
        assert sorted(backend.list("chunks/")) == ["chunks/ab/cd/x"]

    def test_put_blob_leaves_an_existing_object_of_that_length_as_it_is(self, backend: Backend) -> None:
        backend.put_blob("b/obj", b"original")
        assert backend.put_blob("b/obj", b"ORIGINAL") is False
        assert backend.get("b/obj") == b"original"

    @pytest.mark.parametrize("left", [b"", b"partial"])
    def test_put_blob_replaces_an_existing_object_of_another_length(self, backend: Backend, left: bytes) -> None:
        """What a killed writer or a power loss can leave under a name (nothing, or the
        start of the bytes) is not taken for the object: storing it again repairs it."""
        whole = b"partial object, written whole"
        assert backend.put_if_absent("b/obj", left) is True
        assert backend.put_blob("b/obj", memoryview(whole)) is True
        assert backend.get("b/obj") == whole
        assert backend.put_blob("b/obj", whole) is False

    def test_put_blob_accepts_memoryview_slices(self, backend: Backend) -> None:
        buf = bytearray(os.urandom(10_000))
        view = memoryview(buf)[1000:3000]
        assert backend.put_blob("b/slice", view) is True
        assert backend.get("b/slice") == bytes(buf[1000:3000])

    # ---- reads ------------------------------------------------------------------------------

    def test_missing_object_raises_object_not_found(self, backend: Backend) -> None:
        backend.put_blob("present/a", b"x")
        for call in (
            lambda: backend.get("absent/a"),
            lambda: backend.get_range("absent/a", 0, 1),
            lambda: backend.info("absent/a"),
            lambda: backend.get("present/b"),
        ):
            with pytest.raises(ObjectNotFoundError) as info:
                call()
            assert isinstance(info.value, FileNotFoundError)
            assert isinstance(info.value, CasstoreError)

    @pytest.mark.parametrize("room", [0, 1, 999, 1000, 1001, 4096])
    def test_get_into_gives_the_whole_object_whatever_the_buffer(self, backend: Backend, room: int) -> None:
        data = os.urandom(1000)
        backend.put_blob("r/into", data)
        buf = bytearray(b"\xee" * room)
        got = backend.get_into("r/into", buf)
        assert bytes(got) == data, "the object's bytes, never the buffer's old ones"
        with pytest.raises(ObjectNotFoundError):
            backend.get_into("absent/into", bytearray(1000))

    def test_mapped_gives_the_whole_object_and_keeps_it_while_replaced(self, backend: Backend) -> None:
        data = os.urandom(3000)
        backend.put_blob("r/mapped", data)
        backend.put_blob("r/empty", b"")
        with backend.mapped("r/mapped") as view:
            backend.put_blob("r/mapped", b"shorter")  # a replacement while mapped: the map keeps the bytes it had
            assert bytes(view) == data
        with backend.mapped("r/empty") as view:
            assert bytes(view) == b""
        with pytest.raises(ObjectNotFoundError):
            with backend.mapped("absent/mapped"):
                pass
        backend.put_blob("dir2/leaf", b"x")
        with pytest.raises(ObjectNotFoundError):
            with backend.mapped("dir2"):
                pass

    def test_a_directory_prefix_is_not_an_object(self, backend: Backend) -> None:
        backend.put_blob("dir/sub/leaf", b"x")
        assert backend.exists_many(["dir", "dir/sub", "dir/sub/leaf"]) == [False, False, True]
        for key in ("dir", "dir/sub"):
            with pytest.raises(ObjectNotFoundError):
                backend.get(key)
            with pytest.raises(ObjectNotFoundError):
                backend.info(key)

    @pytest.mark.parametrize(
        ("start", "end"),
        [(0, 10), (0, 3), (2, 5), (9, 10), (3, 3), (0, 0), (8, 20), (10, 12), (20, 30), (0, 1 << 40)],
    )
    def test_get_range_returns_the_slice_clipped_at_the_end(self, backend: Backend, start: int, end: int) -> None:
        data = b"0123456789"
        backend.put_blob("r/obj", data)
        assert backend.get_range("r/obj", start, end) == data[start:end]

    def test_get_range_refuses_a_bad_range(self, backend: Backend) -> None:
        backend.put_blob("r/obj", b"0123456789")
        for start, end in ((-1, 3), (5, 2), (-5, -1)):
            with pytest.raises(InvalidInputError):
                backend.get_range("r/obj", start, end)

    def test_exists_many_answers_in_order(self, backend: Backend) -> None:
        present = {f"ex/{i:03d}" for i in range(0, 60, 3)}
        for k in present:
            backend.put_blob(k, k.encode())
        asked = [f"ex/{i:03d}" for i in range(60)] + ["ex/000", "ex/001", "nowhere/x"]
        assert backend.exists_many(asked) == [k in present for k in asked]
        assert backend.exists_many([]) == []
        assert backend.exists("ex/000") is True
        assert backend.exists("ex/001") is False

    def test_info_gives_size_and_a_current_mtime(self, backend: Backend) -> None:
        before = time.time()
        backend.put_blob("i/obj", b"x" * 1234)
        after = time.time()
        info = backend.info("i/obj")
        assert info.key == "i/obj"
        assert info.size == 1234
        # generous: remote clocks drift and some stores keep whole seconds
        assert before - 60 <= info.mtime <= after + 60, f"mtime {info.mtime} is not a current epoch time"

    def test_touch_advances_mtime_and_keeps_content(self, backend: Backend) -> None:
        backend.put_blob("t/obj", b"content")
        first = backend.info("t/obj").mtime
        deadline = time.monotonic() + 5  # stores with one-second mtimes need a second or two
        pause = 0.02
        while True:
            time.sleep(pause)
            backend.touch("t/obj")
            if backend.info("t/obj").mtime > first or time.monotonic() > deadline:
                break
            pause = min(pause * 2, 0.5)
        assert backend.info("t/obj").mtime > first, "touch did not advance the modification time"
        assert backend.get("t/obj") == b"content"

    def test_touch_of_a_missing_key_creates_nothing(self, backend: Backend) -> None:
        backend.touch("t/missing")
        assert backend.exists("t/missing") is False
        assert list(backend.list("t/")) == []

    def test_touch_reports_whether_the_object_exists(self, backend: Backend) -> None:
        backend.put_blob("t/here", b"x")
        assert backend.touch("t/here") is True
        assert backend.touch("t/missing") is False
        backend.delete("t/here")
        assert backend.touch("t/here") is False

    def test_delete_if_stale_deletes_only_what_was_not_touched_since(self, backend: Backend) -> None:
        backend.put_blob("g/stale", b"old")
        backend.put_blob("g/fresh", b"old too, but touched")
        threshold = max(backend.info("g/stale").mtime, backend.info("g/fresh").mtime) + 1e-6
        deadline = time.monotonic() + 5  # stores with one-second mtimes need a second or two
        while backend.touch("g/fresh") and backend.info("g/fresh").mtime < threshold:
            assert time.monotonic() < deadline, "touch did not move the mtime past the threshold"
            time.sleep(0.05)
        assert backend.delete_if_stale("g/stale", threshold) is True
        assert backend.delete_if_stale("g/stale", threshold) is False
        assert backend.delete_if_stale("g/fresh", threshold) is False
        assert backend.delete_if_stale("g/never", threshold) is False
        assert sorted(backend.list("g/")) == ["g/fresh"]
        assert backend.get("g/fresh") == b"old too, but touched"

    # ---- listing ---------------------------------------------------------------------------

    def test_list_of_an_empty_store_is_empty(self, backend: Backend) -> None:
        assert list(backend.list()) == []
        assert list(backend.list("runs/")) == []
        assert list(backend.list("runs/ab")) == []

    _LIST_KEYS = (
        "casstore.json",
        "runs/ab/meta",
        "runs/ab/artifacts/k1",
        "runs/abc/meta",
        "runs/a/meta",
        "runs/b/meta",
        "runsx/meta",
        "chunks/00/11/0011aa",
        "chunks/00/12/0012bb",
    )

    @pytest.mark.parametrize(
        "prefix",
        ["", "r", "runs", "runs/", "runs/a", "runs/ab", "runs/ab/", "runs/abc/", "runs/ab/meta", "runs/ab/m",
         "runs/c", "chunks/00/1", "chunks/00/11/", "nothing/", "casstore.json"],
    )
    def test_list_yields_exactly_the_keys_with_the_prefix(self, backend: Backend, prefix: str) -> None:
        for k in self._LIST_KEYS:
            backend.put_if_absent(k, k.encode())
        got = list(backend.list(prefix))
        assert len(got) == len(set(got)), "list yielded a key twice"
        assert sorted(got) == sorted(k for k in self._LIST_KEYS if k.startswith(prefix))

    @pytest.mark.parametrize(("prefix", "after", "stop", "want"), [
        ("runs/", "", None, ["runs/a/meta", "runs/ab/artifacts/k1", "runs/ab/meta", "runs/abc/meta", "runs/b/meta"]),
        ("runs/", "runs/ab/meta", None, ["runs/abc/meta", "runs/b/meta"]),
        ("runs/", "runs/a/meta", "runs/abc", ["runs/ab/artifacts/k1", "runs/ab/meta"]),
        ("", "runs/b/meta", None, ["runsx/meta"]),
    ])
    def test_list_after_gives_the_keys_after_a_key_in_order_with_their_times(
        self, backend: Backend, prefix: str, after: str, stop: str | None, want: list[str]
    ) -> None:
        before = time.time()
        for k in self._LIST_KEYS:
            backend.put_if_absent(k, k.encode())
        got = list(backend.list_after(prefix, after, stop))
        keys = [k for k, _ in got]
        assert keys == sorted(keys) and len(keys) == len(set(keys))
        # a few keys at or past ``stop`` may come (the rest of a listing page), none before ``after``
        assert [k for k in keys if stop is None or k < stop] == want
        for _, mtime in got:  # generous, as for info: remote clocks drift and some stores keep whole seconds
            assert before - 60 <= mtime <= time.time() + 60, f"mtime {mtime} is not a current epoch time"
        clock = backend.server_time()  # the service's clock, from its responses (None: the machine's is the store's)
        assert clock is None or abs(clock - time.time()) < 60

    def test_list_never_shows_an_unfinished_object(self, backend: Backend) -> None:
        if not backend.supports_atomic_create:
            pytest.skip("backend does not claim atomic publication of objects")
        blobs = {f"big/{i:02d}": bytes([i]) * (1 << 20) for i in range(24)}
        done = threading.Event()
        errors: list[BaseException] = []

        def writer() -> None:
            try:
                for i, (k, v) in enumerate(blobs.items()):
                    (backend.put_if_absent if i % 2 else backend.put_blob)(k, v)
            except BaseException as e:
                errors.append(e)
            finally:
                done.set()

        th = threading.Thread(target=writer)
        th.start()
        seen_all = False
        while not seen_all:
            seen_all = done.is_set()
            for k in backend.list("big/"):
                assert k in blobs, f"list showed {k!r}, which nobody wrote (a temporary file?)"
                assert backend.get(k) == blobs[k], f"{k!r} was visible before it was complete"
        th.join()
        assert not errors, errors
        assert sorted(backend.list("big/")) == sorted(blobs)

    # ---- delete -----------------------------------------------------------------------------

    def test_delete_removes_and_a_missing_key_is_fine(self, backend: Backend) -> None:
        backend.put_blob("d/a", b"1")
        backend.put_blob("d/b", b"2")
        backend.delete("d/a")
        backend.delete("d/a")
        backend.delete("d/never")
        assert backend.exists_many(["d/a", "d/b"]) == [False, True]
        assert sorted(backend.list("d/")) == ["d/b"]
        with pytest.raises(ObjectNotFoundError):
            backend.get("d/a")
        assert backend.put_if_absent("d/a", b"again") is True
        assert backend.get("d/a") == b"again"

    # ---- keys --------------------------------------------------------------------------------

    def test_every_allowed_character_round_trips(self, backend: Backend) -> None:
        key = "A-Z_a.z/0123456789/x@y=z+w-v.k"
        backend.put_if_absent(key, b"ok")
        assert backend.get(key) == b"ok"
        assert list(backend.list("A-Z_a.z/")) == [key]

    @_SLOW_IO
    @given(bad=cst.invalid_keys())
    def test_invalid_keys_are_refused_and_touch_nothing(self, backend: Backend, sandbox: Path | None, bad: str) -> None:
        root = getattr(backend, "root", None)
        exclude = os.path.abspath(root) if isinstance(root, str) and sandbox is not None else None
        before_store = sorted(backend.list())
        before_outside = _snapshot(sandbox, exclude)
        calls: list[Callable[[], Any]] = [
            lambda: backend.put_if_absent(bad, b"escape"),
            lambda: backend.put_blob(bad, b"escape"),
            lambda: backend.get(bad),
            lambda: backend.get_range(bad, 0, 1),
            lambda: backend.info(bad),
            lambda: backend.delete(bad),
            lambda: backend.touch(bad),
            lambda: backend.exists_many(["ok/key", bad]),
        ]
        for call in calls:
            with pytest.raises(InvalidInputError):
                call()
        assert sorted(backend.list()) == before_store
        assert _snapshot(sandbox, exclude) == before_outside

    @pytest.mark.parametrize("prefix", ["..", "../", "../x", "/", "/etc", "a/../", "a/./b", ".tmp-", "a/.hidden/", "a b"])
    def test_list_refuses_an_unsafe_prefix(self, backend: Backend, prefix: str) -> None:
        with pytest.raises(InvalidInputError):
            list(backend.list(prefix))

    # ---- durability barrier ---------------------------------------------------------------

    def test_flush_can_be_called_any_time_and_keeps_data(
        self, backend: Backend, backend_factory: Callable[[], Backend] | None
    ) -> None:
        backend.flush()
        backend.put_if_absent("f/a", b"a")
        backend.put_blob("f/b", b"b")
        backend.flush()
        backend.flush()
        assert [backend.get("f/a"), backend.get("f/b")] == [b"a", b"b"]
        if backend.durable and backend_factory is not None:
            other = backend_factory()
            try:
                assert other.get("f/a") == b"a"
            finally:
                other.close()

    # ---- against a model -------------------------------------------------------------------

    def test_behaves_like_a_dict(self, backend: Backend) -> None:
        machine = type("DictModelMachine", (_DictModelMachine,), {"backend": backend})
        # older hypothesis releases leave this function unannotated
        run_state_machine_as_test(  # type: ignore[no-untyped-call, unused-ignore]
            machine,
            settings=settings(
                max_examples=int(os.environ.get("CASSTORE_CONFORMANCE_EXAMPLES", "20")),
                stateful_step_count=25,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )


class _DictModelMachine(RuleBasedStateMachine):
    """Random operations on the backend and on a dict; after each step they must agree."""

    backend: Backend
    stored = Bundle("stored")

    def __init__(self) -> None:
        super().__init__()
        self.ns = f"sm/{uuid.uuid4().hex[:16]}/"  # each run starts from an empty namespace
        self.model: dict[str, bytes] = {}

    def _key(self, key: str) -> str:
        return self.ns + key

    @rule(target=stored, key=cst.keys(), data=cst.blobs())
    def put_if_absent(self, key: str, data: bytes) -> str:
        created = self.backend.put_if_absent(self._key(key), data)
        assert created == (key not in self.model)
        self.model.setdefault(key, data)
        return key

    @rule(target=stored, key=st.one_of(stored, cst.keys()), data=cst.blobs())
    def put_blob(self, key: str, data: bytes) -> str:
        data = self.model.get(key, data)  # content-addressed writers all write the same bytes
        wrote = self.backend.put_blob(self._key(key), data)
        assert wrote == (key not in self.model)
        self.model[key] = data
        return key

    @rule(key=st.one_of(stored, cst.keys()))
    def get(self, key: str) -> None:
        if key in self.model:
            assert self.backend.get(self._key(key)) == self.model[key]
        else:
            with pytest.raises(ObjectNotFoundError):
                self.backend.get(self._key(key))

    @rule(key=stored, start=st.integers(0, 3000), length=st.integers(0, 3000))
    def get_range(self, key: str, start: int, length: int) -> None:
        if key in self.model:
            assert self.backend.get_range(self._key(key), start, start + length) == self.model[key][start : start + length]

    @rule(key=stored)
    def info(self, key: str) -> None:
        if key in self.model:
            assert self.backend.info(self._key(key)).size == len(self.model[key])

    @rule(key=st.one_of(stored, cst.keys()))
    def delete(self, key: str) -> None:
        self.backend.delete(self._key(key))
        self.model.pop(key, None)

    @rule(keys=st.lists(st.one_of(stored, cst.keys()), max_size=8))
    def exists_many(self, keys: list[str]) -> None:
        assert self.backend.exists_many([self._key(k) for k in keys]) == [k in self.model for k in keys]

    @rule(key=st.one_of(stored, cst.keys()), data=st.data())
    def list_prefix(self, key: str, data: st.DataObject) -> None:
        prefix = data.draw(cst.prefixes_of(key))
        got = sorted(self.backend.list(self._key(prefix)))
        assert got == sorted(self._key(k) for k in self.model if k.startswith(prefix))

    @invariant()
    def listing_matches(self) -> None:
        assert sorted(self.backend.list(self.ns)) == sorted(self._key(k) for k in self.model)
