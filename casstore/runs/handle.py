"""Writing to a run: the :class:`RunHandle`.

Every write follows one order: data first (chunks, recipe), then a durability
barrier (``objects.flush()``), then the record that references it, created with
the backend's atomic create-if-absent. A small artifact in a version-3 store is
its record alone: the record holds the content (kind ``inline``), so there is
nothing to flush before it. A path, param or model name is bound once:
the same value again is a no-op, a different one raises
:class:`~casstore.exceptions.ImmutableArtifactError`. Many handles, threads and
processes may write one run at once; each race has exactly one winner.

An artifact path is a file or a directory, never both (``model`` and
``model/weights.txt`` are refused together, with
:class:`~casstore.exceptions.ArtifactPathConflictError`). Within one process this
is exact (:class:`~casstore.runs.claims.PathClaims`); across processes a writer
checks the run's records just before binding: no directory marker at a new file's
path, no file bound at a directory it makes, whose marker it then creates.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from typing import Any, Protocol, TypeVar

from casstore._paths import clean_artifact_path
from casstore.exceptions import (
    ArtifactPathConflictError,
    CasstoreError,
    CorruptRecordError,
    ImmutableArtifactError,
    InvalidInputError,
    LocalFileError,
    ObjectNotFoundError,
    RunStateError,
    StoreFullError,
    StoreUnavailableError,
)
from casstore.backend.base import Backend, recording_creations
from casstore.objects import ObjectStore, Stored
from casstore.objects.codec import pack, pack_checked
from casstore.objects.digest import check_digest, hash_bytes, is_digest
from casstore.runs import layout
from casstore.runs.batches import (
    BATCH_BINDINGS,
    BATCHED_FROM,
    Batch,
    BatchArtifact,
    Folded,
    batch_key,
    batch_number,
    batches_prefix,
    decode_batch,
    fold,
    parents,
    path_conflict,
    witness_key,
    witness_record,
)
from casstore.runs.compact import holding_inline, remove_redundant
from casstore.runs.claims import PathClaims, directories
from casstore.runs.layout import RECORD_VERSION, check_name, check_whole, name_key, now_ms
from casstore.runs.metrics import MetricBuffer, hold, register_flushable, release
from casstore.runs.records import (INLINE, ArtifactEntry, MetricPoint, RunView, decode_record, encode_record,
                                   point_key)
from casstore.runs.state import (INPUT_FIELDS, BatchVanished, RunState, check_input, get_many, manifest_of,
                                 read_live_state)
from casstore.runs.wal import WalDir, WalWriter
from casstore.utils.mlflow_tags import MLFLOW_RUN_NAME

__all__ = ["RunHandle", "RunOwner", "RUN_STATUSES"]

_PARAM_HINT = "Params are immutable within a run: log the new value under another key, or start a new run."

#: statuses a run can be sealed with (MLflow's terminal statuses)
RUN_STATUSES = ("FINISHED", "FAILED", "KILLED")
#: on a local disk, files smaller than this on average are stored by one thread: storing
#: a small file is a few system calls, and threads handing the GIL to each other between
#: them cost more than they overlap (4 threads took twice one thread's time for 4 KiB
#: files on two cores, and broke even at 256 KiB; 1 MiB files gained a third)
POOL_MIN_AVERAGE_SIZE = 256 << 10
#: small files' content held in memory between reading them and binding them in their
#: records; past this, a file's content is read again when it is bound (and checked)
INLINE_HELD_MAX = 64 << 20
#: artifacts bound in one batch record: a new batch once their inline content reaches this
BINDINGS_PER_BATCH = 8 << 20
_READ_AGAIN = object()  # stands for content let go after hashing, to be read again
#: a batch of more new paths than this lists the run's directory markers once instead of
#: asking for the marker at each path
LIST_MARKERS_OVER = 16
#: tries at numbering a batch before giving up (each lost race means another writer's
#: batch landed first; the registry's numbering allows as many)
BATCH_ATTEMPTS = 200
#: numbers a fence (a closing or deleting batch) tries in a row, each taken by another writer's
#: batch meanwhile; writers need a listing per number, the fence a create, so it catches up
#: long before this (a bound against a store that misreports every create as taken)
FENCE_PROBES = 10_000


T = TypeVar("T")
#: an object whose mtime is less than this past the mtime it was created with was not touched since
_UNCHANGED = 0.0005


def _all_or_none(futures: list[Future[T]]) -> list[T]:
    """The results of ``futures``; at the first failure, those not started are cancelled and
    the running ones awaited (so nothing is written after the caller cleans up), then the
    first error is raised."""
    _done, running = wait(futures, return_when=FIRST_EXCEPTION)
    for f in running:
        f.cancel()
    wait(running)
    for f in futures:
        if not f.cancelled() and f.exception() is not None:
            raise f.exception()  # type: ignore[misc]
    return [f.result() for f in futures]


def _local_sizes(paths: list[str]) -> int:
    total = 0
    for p in paths:
        try:
            total += os.stat(p).st_size
        except OSError:
            pass
    return total


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def _full_store(url: str, e: StoreFullError, needed: int, files: int, freed: int | None,
                free: int | None) -> StoreFullError:
    """The error of a log that found the store full: what was needed, what is free, what was
    removed (``None``: nothing could be, on a store without exact stale deletes), and how to
    make room."""
    have = f", and {_mib(free)} are free" if free is not None else ""
    why = ("its quota is used up" if "quota" in str(e).lower() else "no space is left on its device"
           if free is not None else "the service is out of space")
    if freed is not None:
        left = f"What this log had written ({_mib(freed)}) was removed again."
    else:
        left = ("What this log had written before it failed stays in the store: on this store it cannot be removed "
                "at once without risking content another writer is storing at the same time (see the reliability "
                "page); `casstore gc --no-writers`, run while no one writes to the store, frees it together with the "
                "data of runs you delete, and a plain `casstore gc` does after its grace period. Logging the same "
                "files again sends only what is missing.")
    return StoreFullError(
        f"the store {url} is full ({why}): logging {files} file(s) needs up to {_mib(needed)} (less what the store "
        f"already holds){have}. {left} To make room: delete "
        "runs you no longer need (`casstore delete-run`) and run `casstore gc`, which frees their data after the "
        "grace period, or at once with `casstore gc --no-writers` while no one writes to the store; or give the "
        "store more space. Then log again.",
        needed=needed, free=free,
    )


class RunOwner(Protocol):
    """What a handle needs of the store that opened it (:class:`~casstore.runs.store.RunStore`
    is one): the store below, its settings, and the reads and records a writer shares with
    the other handles of the process."""

    backend: Backend
    objects: ObjectStore
    url: str
    metric_flush_points: int
    metric_flush_seconds: float
    io_workers: int
    #: where writers keep their metric write-ahead logs (None: none kept)
    wal: WalDir | None
    #: version 5: no manifest objects beside the seals
    manifest_objects: bool
    #: version 5 on a backend that compacts: a sealed run keeps its seal only (runs/compact.py)
    compacts: bool

    def base_of(self, run_id: str, generation: int) -> tuple[RunState, int] | None: ...

    def path_claims(self, run_id: str) -> PathClaims: ...

    def _seal_at(self, run_id: str, generation: int) -> dict[str, Any] | None: ...

    def get_run(self, run_id: str, *, flush: bool = True, warn: bool = True) -> RunView: ...

    def discard_dead_logs(self, run_id: str) -> None: ...

    def put_model_entry(self, entry: dict[str, Any]) -> str: ...

    def _flush_local(self, run_id: str, but: RunHandle | None = None) -> None: ...

    def entry_key(self, experiment_id: str, run_id: str) -> str: ...

    def publish_summary(self, run_id: str, state: RunState, status: str, end_time: int, digest: str,
                        generation: int = 0) -> None: ...


class RunHandle:
    """A writer on one unsealed run. Thread-safe."""

    def __init__(self, store: RunOwner, run_id: str, meta: dict[str, Any], generation: int = 0,
                 entry_key: str | None = None) -> None:
        self.store = store
        self.run_id = run_id
        #: the run's entry in its experiment, when this handle made it (else found when needed)
        self._entry_key = entry_key
        #: which end of the run this handle writes towards (0 unless it was resumed after ending)
        self.generation = generation
        self._seal_key = layout.seal_key(run_id, generation)
        self._closing_key = layout.closing_key(run_id, generation)
        self.experiment_id: str = meta["experiment_id"]
        self.meta = meta
        self._backend = store.backend
        self._objects = store.objects
        self._metrics = MetricBuffer(store.metric_flush_points, store.metric_flush_seconds)
        self._write_lock = threading.Lock()  # serialises metric segment writes and the seal
        self._known: dict[str, dict[str, Any]] = {layout.run_meta_key(run_id): meta}
        self._known_lock = threading.Lock()
        self._digest: str | None = None
        self._claims = store.path_claims(run_id)
        #: version 4: params, tags and metrics go in numbered batch records (runs/batches.py)
        self._batched = store.objects.config.version >= BATCHED_FROM
        self._batches: dict[int, Batch] = {}  # immutable: each read at most once
        #: artifact bindings in the batch records too (a run created in a packs store)
        self._batch_bindings = self._batched and meta.get("bindings") == BATCH_BINDINGS
        self._batch_lock = threading.Lock()
        self._folded: Folded | None = None  # the batches read so far, folded (extended as more are read)
        self._folded_numbers: set[int] = set()  # the numbers of the batches in it
        self._wal: WalWriter | None = None  # this handle's metric log, opened at its first point
        self._witnessed: int | None = None  # the batch this handle's witness record names
        register_flushable(self)

    def __repr__(self) -> str:
        return f"RunHandle({self.run_id!r}, store={self.store.url!r})"

    def initial_view(self) -> RunView:
        """The run as it was created (its meta and tags), without reading the store."""
        tags = dict(self.meta.get("tags") or {})
        name = tags.get(MLFLOW_RUN_NAME) or str(self.meta.get("run_name") or "")
        return RunView(self.run_id, name, self.experiment_id, "RUNNING", int(self.meta["start_time"]), None, None,
                       False, False, {}, tags, {}, {}, {})

    # ---- state -------------------------------------------------------------------

    @property
    def sealed(self) -> bool:
        """Whether the run is sealed (asks the store unless this handle sealed it)."""
        if self._digest is None:
            seal = self.store._seal_at(self.run_id, self.generation)
            if seal is not None:
                self._digest = str(seal["digest"])
        return self._digest is not None

    def _check_open(self, also: Sequence[str] = ()) -> dict[str, bool]:
        """Raise unless the run is open; return whether each key of ``also`` exists (asked
        in the same batch)."""
        if self._digest is not None:
            raise self._sealed_error()
        found = self._backend.exists_many([self._seal_key, layout.deleted_key(self.run_id), *also])
        if found[0]:
            raise self._sealed_error()
        if found[1]:
            raise RunStateError(f"run {self.run_id} is deleted; it accepts nothing more")
        return dict(zip(also, found[2:]))

    def _sealed_error(self) -> RunStateError:
        return RunStateError(
            f"run {self.run_id} is ended and sealed; it accepts nothing more. "
            "Start a new run (start_run()) to log more."
        )

    def _check_in_seal(self, kind: str, names: list[str], values: dict[str, str] | None = None) -> None:
        """After a write: if the run was sealed meanwhile, the write counts only if the seal has it
        (``names`` present under ``kind``; for tags, with the ``values`` written). Not for
        artifacts bound in a batch record: one numbered below the close is in the seal."""
        if kind == "artifacts" and self._batch_bindings:
            return
        if not self._sealed_or_closed():
            return
        view = self.store.get_run(self.run_id, flush=False, warn=False)
        held: dict[str, dict[str, Any]] = {
            "artifacts": view.artifacts, "params": view.params, "models": view.models, "tags": view.tags,
        }
        missing = [n for n in names if n not in held[kind] or (values is not None and held[kind][n] != values[n])]
        if missing:
            raise RunStateError(
                f"run {self.run_id} was ended by another writer while {kind} {missing[:3]!r} "
                f"{'were' if len(missing) > 1 else 'was'} being logged; the run's seal does not include "
                f"{len(missing)} of them. Log them in a new run."
            )

    def _sealed_or_closed(self, *, listed: bool = True) -> bool:
        """After binding a record: whether the run is sealed (then its seal says whether it
        holds the record). A run another writer's end has closed but not sealed yet is sealed
        here first, completing that end (the first seal wins; the closing batch gives its
        status): which records that end's seal holds is known only once it exists, and a
        writer that returned before would never learn that its record was left out.
        ``listed``: the batches were just listed (by the binding), else they are listed now.
        Before version 4 the end's closing marker (:func:`layout.closing_key`, created before
        the end lists the run) plays the closing batch's part."""
        if not self._batched:
            sealed, closing = self._backend.exists_many([self._seal_key, self._closing_key])
            if closing and not sealed:
                self.end()
            return sealed or closing
        if self._backend.exists(self._seal_key):
            return True
        with self._batch_lock:
            folded = self._folded if listed else self._sync_batches(self._backend.list(batches_prefix(self.run_id)))
        if folded is None or folded.deleted is not None or self.generation not in folded.closes:
            return False
        self.end()
        return True

    def _remember(self, key: str, rec: dict[str, Any]) -> None:
        with self._known_lock:
            self._known[key] = rec

    def _bind(self, key: str, rec: dict[str, Any], field: str, what: str, hint: str = "",
              payload: bytes | None = None) -> dict[str, Any]:
        """Create ``key`` holding ``rec`` (and ``payload`` as its ``data`` field) unless bound;
        return the bound record (ours or an equal one), without its data."""
        if self._backend.put_if_absent(key, encode_record(rec if payload is None else {**rec, "data": payload})):
            self._remember(key, rec)
            return rec
        existing = decode_record(self._backend.get(key), f"record {key}")
        existing.pop("data", None)
        if existing.get(field) != rec[field]:
            raise ImmutableArtifactError(what, str(existing.get(field)), str(rec[field]), hint)
        self._remember(key, existing)
        return existing

    # ---- artifacts ---------------------------------------------------------------

    def _path_questions(self, new: list[str], paths: list[str]) -> tuple[dict[str, str], list[str], list[str], list[str]]:
        """What :meth:`_settle_paths` asks the store: the directories ``paths`` make (each with
        its first path), those this process has not seen marked, the keys of the directory
        markers at the ``new`` paths (none for a batch large enough to list the markers
        instead) and the keys of the file bindings at the unmarked directories."""
        if self._batch_bindings:  # checked against the batches below the one that binds them
            return {}, [], [], []
        first = directories(paths)
        dirs = self._claims.unmarked(first)
        markers = [] if len(new) > LIST_MARKERS_OVER else [layout.dir_marker_key(self.run_id, p) for p in new]
        return first, dirs, markers, [layout.artifact_key(self.run_id, d) for d in dirs]

    def _path_keys(self, new: list[str], paths: list[str]) -> list[str]:
        """The keys :meth:`_settle_paths` asks about (:meth:`_path_questions`), to be asked
        ahead in another batch."""
        _, _, markers, files = self._path_questions(new, paths)
        return markers + files

    def _settle_paths(self, new: list[str], paths: list[str], seen: dict[str, bool] | None = None) -> None:
        """Just before ``paths`` are bound (``new``: those this process newly claimed), refuse
        them if the store's records make one a directory (a marker at it) or put one under a
        file (a binding at a directory it makes); then create the marker of each directory
        they make, outermost first. ``seen``: existence already asked (:meth:`_check_open`).
        Raises :class:`ArtifactPathConflictError` with nothing written. Nothing to do where
        artifacts are bound in batch records (:meth:`_bind_entries` checks them)."""
        if self._batch_bindings:
            return
        seen = dict(seen or {})
        first, dirs, markers, files = self._path_questions(new, paths)
        ask = [k for k in markers + files if k not in seen]
        if ask:
            seen.update(zip(ask, self._backend.exists_many(ask)))
        if len(new) > LIST_MARKERS_OVER:
            marked = self._marked_among(new)
        else:
            marked = [p for p, k in zip(new, markers) if seen[k]]
        for d, k in zip(dirs, files):
            if seen[k]:
                raise ArtifactPathConflictError(self.run_id, first[d], d)
        for p in marked:
            if not self._backend.exists(layout.artifact_key(self.run_id, p)):  # bound already: the binding decides
                raise ArtifactPathConflictError(self.run_id, p, self._file_under(p))
        for d in dirs:
            rec = {"v": RECORD_VERSION, "path": d, "file": first[d]}
            self._backend.put_if_absent(layout.dir_marker_key(self.run_id, d), encode_record(rec))
        self._claims.mark(dirs)

    def _marked_among(self, new: list[str]) -> list[str]:
        """Those of ``new`` that have a directory marker, from one listing of the markers: by
        their records' paths if there are few (the usual case: a run makes few directories),
        else by hashing each of ``new``."""
        held = {k.rsplit("/", 1)[-1]: k for k in self._backend.list(layout.dirs_prefix(self.run_id))}
        if not held:
            return []
        if len(held) <= len(new) // 8:
            named: set[str] = set()
            for last, key in held.items():
                try:
                    path = decode_record(self._backend.get(key), f"record {key}").get("path")
                except ObjectNotFoundError:
                    continue
                except CorruptRecordError:
                    break  # hash every path instead
                if not isinstance(path, str) or name_key(path) != last:
                    break  # an odd record: hash every path instead
                named.add(path)
            else:
                return [p for p in new if p in named]
        return [p for p in new if name_key(p) in held]

    def _file_under(self, path: str) -> str:
        """The file named by the directory marker at ``path`` (the first logged under it)."""
        key = layout.dir_marker_key(self.run_id, path)
        try:
            rec = decode_record(self._backend.get(key), f"record {key}")
        except (ObjectNotFoundError, CorruptRecordError):
            return f"{path}/..."
        file = rec.get("file")
        return file if isinstance(file, str) and file.startswith(path + "/") else f"{path}/..."

    def _bind_entry(self, path: str, stored: Stored, inline: bytes | None = None) -> ArtifactEntry:
        """Bind ``path`` to stored content, or to ``inline`` content held in the record itself."""
        if self._batch_bindings:
            (bound_entry,), errors = self._bind_entries([(path, stored, inline)])
            if bound_entry is None:
                raise errors[0]
            return bound_entry
        entry = ArtifactEntry(path, stored.digest, stored.size, "file" if inline is None else INLINE, now_ms())
        rec = entry.to_record()
        bound = self._bind(
            layout.artifact_key(self.run_id, path), rec, "digest",
            f"artifact {path!r} of run {self.run_id}",
            "A run's artifacts are immutable: log the new content under another path, or in a new run.",
            payload=inline,
        )
        if bound is rec:
            return entry
        return ArtifactEntry(path, bound["digest"], int(bound["size"]), str(bound.get("kind", "file")),
                             int(bound.get("logged_at", 0)))

    def _bind_entries(self, items: Iterable[tuple[str, Stored, bytes | None]]
                      ) -> tuple[list[ArtifactEntry | None], list[CasstoreError]]:
        """Bind ``(path, stored, inline content or None)`` in batch records (a run whose
        artifacts are bound there), a batch per :data:`BINDINGS_PER_BATCH` bytes of inline
        content: the entries bound (None for a path bound before to other content) and the
        :class:`ImmutableArtifactError` of each such path. A path that would make a bound
        file a directory, or the reverse, raises :class:`ArtifactPathConflictError` before
        its batch is written."""
        entries: list[ArtifactEntry | None] = []
        errors: list[CasstoreError] = []
        group: list[tuple[str, Stored, bytes | None]] = []
        held = 0

        def write() -> None:
            now = now_ms()
            arts: list[BatchArtifact] = [(p, st.digest, st.size, "file" if data is None else INLINE, now, data)
                                         for p, st, data in group]
            folded, n = self._append({}, {}, [], artifacts=arts)
            for p, st, data in group:
                bound = folded.artifacts.get(p)
                if bound is None:
                    entries.append(ArtifactEntry(p, st.digest, st.size, "file" if data is None else INLINE, now, n))
                elif bound[0][1] == st.digest:
                    a, m = bound
                    entries.append(ArtifactEntry(p, a[1], a[2], a[3], a[4], m))
                else:
                    entries.append(None)
                    errors.append(ImmutableArtifactError(
                        f"artifact {p!r} of run {self.run_id}", bound[0][1], st.digest,
                        "A run's artifacts are immutable: log the new content under another path, or in a new run."))

        for item in items:
            group.append(item)
            held += len(item[2] or b"") + 200
            if held >= BINDINGS_PER_BATCH:
                write()
                group, held = [], 0
        if group:
            write()
        return entries, errors

    def log_file(self, artifact_path: str, local_path: str | os.PathLike[str]) -> ArtifactEntry:
        """Store a local file and bind it at ``artifact_path``."""
        return self.log_files([(artifact_path, os.fspath(local_path))])[0]

    def log_bytes(self, artifact_path: str, data: bytes) -> ArtifactEntry:
        """Store ``data`` and bind it at ``artifact_path``."""
        path = clean_artifact_path(artifact_path)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidInputError(f"log_bytes needs bytes for {path!r}, got {type(data).__name__}")
        new = self._claims.claim([path])
        try:
            seen = self._check_open(self._path_keys(new, [path]))
            if len(data) <= self._objects.layout.inline_max:
                content = bytes(data)
                stored, inline = Stored(hash_bytes(content), len(content)), content
            else:
                with self._storing(lambda: len(data), 1):
                    stored, inline = self._objects.put_bytes(data), None
                    self._objects.flush()
            self._settle_paths(new, [path], seen)
        except BaseException:
            self._claims.release(new)
            raise
        try:
            entry = self._bind_entry(path, stored, inline)
        except ArtifactPathConflictError:
            self._claims.release(new)  # refused with nothing written (a run binding in its batches)
            raise
        self._list_bound([(layout.artifact_key(self.run_id, path), entry.digest)])
        self._check_in_seal("artifacts", [path])
        return entry

    def bind_artifact(self, artifact_path: str, digest: str, size: int) -> ArtifactEntry:
        """Bind content already in the store (by digest) at ``artifact_path``."""
        path = clean_artifact_path(artifact_path)
        digest = check_digest(digest)
        try:
            recipe = self._objects.recipe(digest)
            if not self._objects.touch_file(digest):  # freshened: gc keeps what is re-referenced
                raise ObjectNotFoundError(f"file {digest} was removed while being bound")
        except ObjectNotFoundError as e:
            raise ObjectNotFoundError(
                f"cannot bind {path!r} to {digest}: the store holds no file with that digest; store it first"
            ) from e
        if recipe.size != size:
            raise InvalidInputError(f"cannot bind {path!r}: file {digest} has {recipe.size} bytes, not {size}")
        new = self._claims.claim([path])
        try:
            seen = self._check_open(self._path_keys(new, [path]))
            self._objects.flush()
            self._settle_paths(new, [path], seen)
        except BaseException:
            self._claims.release(new)
            raise
        entry = self._bind_entry(path, Stored(digest, size))
        self._list_bound([(layout.artifact_key(self.run_id, path), entry.digest)])
        self._check_in_seal("artifacts", [path])
        return entry

    def _pool_pays(self, local_paths: list[str]) -> bool:
        """Whether storing these files in threads pays: always on a remote store (requests
        overlap their round trips), on a local disk only for files large enough on average
        (judged from up to 32 of them, spread over the list)."""
        if self._objects.backend.concurrency > 1:
            return True
        sample = local_paths[:: max(1, len(local_paths) // 32)][:32]
        total = 0
        for p in sample:
            try:
                total += os.stat(p).st_size
            except OSError:
                pass  # storing it reports the problem
        return total >= POOL_MIN_AVERAGE_SIZE * max(1, len(sample))

    def log_files(self, items: list[tuple[str, str]], workers: int | None = None, *,
                  inline: bool = True, progress: Callable[[int], None] | None = None) -> list[ArtifactEntry]:
        """Store and bind many ``(artifact_path, local_path)`` pairs with one durability barrier.

        Every file is stored before anything is bound: if any file cannot be read, nothing
        is bound. A path already bound to other content raises after the others are bound;
        a path that would be both a file and a directory (among ``items`` or with the run's
        paths) raises before anything is stored.
        In a version-3 store a file of up to ``layout.inline_max`` bytes is held in its
        record (kind ``inline``) unless ``inline`` is false (a model's files, which a model
        entry names by digest, must be files of the object store). ``progress`` is told the
        bytes of each file as they are stored (from several threads when ``workers`` > 1).
        """
        paths = [clean_artifact_path(p) for p, _ in items]
        locals_ = [os.fspath(lp) for _, lp in items]
        self._check_open()
        n = len(items)
        inline_max = self._objects.layout.inline_max if inline else 0
        if workers is None:
            workers = self.store.io_workers if n >= 8 and self._pool_pays(locals_) else 1
        new = self._claims.claim(paths)
        binding: set[str] = set()  # paths whose binding was tried: their claims stay
        pool = ThreadPoolExecutor(min(workers, n), thread_name_prefix="casstore-log") if n >= 8 and workers > 1 else None
        try:
            stored: list[tuple[Stored, object]] = []
            with self._storing(lambda: _local_sizes(locals_), n):
                if pool:  # each task in a copy of this context: the objects it creates are recorded
                    results: Iterable[tuple[Stored, bytes | None]] = _all_or_none([
                        pool.submit(contextvars.copy_context().run, self._objects.put_or_read, p, inline_max, progress)
                        for p in locals_])
                else:
                    results = (self._objects.put_or_read(p, inline_max, progress) for p in locals_)
                held = 0
                for done, data in results:
                    kept: object = data
                    if data is not None:
                        held += len(data)
                        if held > INLINE_HELD_MAX:
                            kept = _READ_AGAIN  # hashed already: read again when bound
                    stored.append((done, kept))
                self._objects.flush()
            self._settle_paths(new, paths)
            errors: list[CasstoreError] = []

            def bind(i: int) -> ArtifactEntry | None:
                done, data = stored[i]
                if data is _READ_AGAIN:
                    data = self._read_again(locals_[i], inline_max, done)
                binding.add(paths[i])
                try:
                    return self._bind_entry(paths[i], done, data if isinstance(data, bytes) else None)
                except ImmutableArtifactError as e:
                    errors.append(e)
                    return None

            if self._batch_bindings:
                def to_bind() -> Iterator[tuple[str, Stored, bytes | None]]:
                    for i in range(n):
                        done, data = stored[i]
                        if data is _READ_AGAIN:
                            data = self._read_again(locals_[i], inline_max, done)
                        binding.add(paths[i])
                        yield paths[i], done, data if isinstance(data, bytes) else None

                bound, batch_errors = self._bind_entries(to_bind())
                errors.extend(batch_errors)
            else:
                bound = list(pool.map(bind, range(n))) if pool else [bind(i) for i in range(n)]
        except BaseException as e:
            # a run binding in its batches refuses a conflicting batch whole: nothing of it was written
            whole = self._batch_bindings and isinstance(e, ArtifactPathConflictError)
            self._claims.release(new if whole else [p for p in new if p not in binding])
            raise
        finally:
            if pool:
                pool.shutdown(wait=True)
        entries = [b for b in bound if b is not None]
        self._list_bound((layout.artifact_key(self.run_id, b.path), b.digest) for b in entries)
        if errors:
            raise errors[0]
        if n:
            self._check_in_seal("artifacts", paths)
        return entries

    def _read_again(self, local: str, inline_max: int, done: Stored) -> bytes:
        """A small file's content read again to be bound, once it is checked to be what was hashed."""
        data = self._objects.read_small_file(local, inline_max)
        if data is None or hash_bytes(data) != done.digest:
            raise LocalFileError(
                f"{local!r} changed while it was being logged (its content is no longer what was "
                f"hashed, {done.digest}); it was not bound. Log it again once it is no longer being written."
            )
        return data

    @contextlib.contextmanager
    def _storing(self, needed: Callable[[], int], files: int) -> Iterator[None]:
        """Store content for a log: if it fails, remove the objects this call alone created
        (nothing references them yet) and, for a full store, say how much was needed."""
        with recording_creations() as created:
            try:
                yield
            except BaseException as e:
                freed = self._remove_created(created) if getattr(self._backend, "exact_stale_delete", False) else None
                if isinstance(e, StoreFullError):
                    raise _full_store(self.store.url, e, needed(), files, freed, self._backend.free_bytes()) from e
                raise

    def _remove_created(self, created: list[tuple[str, float]]) -> int:
        """Remove the objects of ``created`` that no one reused since (their mtime unchanged:
        a writer that deduplicates touches what it reuses, moving its mtime, see gc's protocol);
        referrers (hints, recipes) before chunks. Only where the check and the delete are one
        step (``exact_stale_delete``, which the caller checks); elsewhere gc collects them (on
        S3 a delete cannot be made conditional on the object being untouched: see
        docs/reliability.md). Returns the bytes freed."""
        order = {"hints": 0, "files": 1, "models": 2}
        freed = 0
        for key, mtime in sorted(created, key=lambda c: order.get(c[0].split("/", 1)[0], 3)):
            try:
                size = self._backend.info(key).size
                if self._backend.delete_if_stale(key, mtime + _UNCHANGED):
                    freed += size
            except CasstoreError:
                continue  # gone, or unreadable: gc settles it
        return freed

    def _list_bound(self, bound: Iterable[tuple[str, str]]) -> None:
        """Version 4: list records just bound (``(key, digest)``) in a batch, so their removal
        is found (see casstore/runs/batches.py). A run whose artifacts are bound in its batches
        has no artifact records to list."""
        refs = {key.removeprefix(layout.run_prefix(self.run_id)): digest for key, digest in bound}
        if self._batch_bindings:
            refs = {rel: digest for rel, digest in refs.items() if not rel.startswith("artifacts/")}
        if self._batched and refs:
            self._append({}, {}, [], refs=refs)

    # ---- models ------------------------------------------------------------------

    def add_model(self, name: str, entry: dict[str, Any]) -> str:
        """Store a model entry and bind it under ``name``; return the model digest."""
        name = clean_artifact_path(name, "model name")
        self._check_open()
        files = entry.get("files") if isinstance(entry, dict) else None
        if isinstance(files, dict):
            named = {str(f["digest"]): rel for rel, f in files.items() if isinstance(f, dict) and is_digest(f.get("digest"))}
            missing = self._objects.missing_files(sorted(named))
            if missing:
                raise InvalidInputError(
                    f"model {name!r} names file {named[missing[0]]!r} ({missing[0]}), which the object store does not "
                    "hold: a model's files must be stored files (log them with log_files(..., inline=False)), "
                    "not artifacts held in their run records"
                )
        digest = self.store.put_model_entry(entry)
        self._objects.flush()
        bound = self._bind(
            layout.model_ref_key(self.run_id, name),
            {"v": RECORD_VERSION, "name": name, "digest": digest, "logged_at": now_ms()},
            "digest", f"model {name!r} of run {self.run_id}",
            "A logged model is immutable: log the new model under another name, or in a new run.",
        )
        self._list_bound([(layout.model_ref_key(self.run_id, name), str(bound["digest"]))])
        self._check_in_seal("models", [name])
        return digest

    # ---- params and tags -----------------------------------------------------------

    def log_param(self, key: str, value: str) -> None:
        """Bind a param; the same value again is a no-op, a different one raises."""
        self.log_batch(params={key: value})

    def set_tag(self, key: str, value: str) -> None:
        """Set a tag (tags may change while the run is open; the latest value wins)."""
        self.log_batch(tags={key: value})

    def log_batch(self, params: Mapping[str, object] | None = None, tags: Mapping[str, object] | None = None,
                  metrics: Iterable[tuple[str, float, int, int | None]] = ()) -> None:
        """Bind params, set tags and record metric points ``(key, value, step, timestamp_ms)``
        at once, with one check that the run is open. In a version-4 store it is one batch
        record (metric points included); before, one record per param and tag (the points
        are buffered). A param bound before to another value raises
        :class:`ImmutableArtifactError` and, in a version-4 store, nothing is written."""
        ps = {check_name("param", k): str(v) for k, v in (params or {}).items()}
        ts = {check_name("tag", k): str(v) for k, v in (tags or {}).items()}
        points = [self._point(k, v, s, t) for k, v, s, t in metrics]
        if self._digest is not None:
            raise self._sealed_error()
        if self._batched:
            if ps or ts or points:
                self._append(ps, ts, points)
            return
        self._check_open()
        for key, value in ps.items():
            self._bind(
                layout.param_key(self.run_id, key), {"v": RECORD_VERSION, "key": key, "value": value},
                "value", f"param {key!r} of run {self.run_id}", _PARAM_HINT,
            )
        for key, value in ts.items():
            k = layout.tag_key(self.run_id, key)
            rec = {"v": RECORD_VERSION, "key": key, "value": value, "time": now_ms()}
            self._backend.put_if_absent(k, encode_record(rec))
            self._remember(k, rec)
        if ps:
            self._check_in_seal("params", list(ps))
        if ts:
            self._check_in_seal("tags", list(ts), ts)
        for p in points:
            self._buffer(p)

    # ---- batches (version 4) -------------------------------------------------------

    def _sync_batches(self, keys: Iterable[str]) -> Folded:
        """Read the batch records among ``keys`` this handle has not read yet; fold them all."""
        prefix = batches_prefix(self.run_id)
        listed: dict[int, str] = {}
        for k in keys:
            n = batch_number(k) if k.startswith(prefix) else None
            if n is not None:
                listed[n] = k
        want = [n for n in sorted(listed) if n not in self._batches]
        for n, data in zip(want, get_many(self._backend, [listed[n] for n in want])):
            if data is None:  # removed by the end that sealed the run (runs/compact.py)
                if self._backend.exists(self._seal_key):
                    raise self._sealed_error()
                raise BatchVanished(f"batch record {listed[n]} was listed and then removed: the run was sealed meanwhile")
            self._batches[n] = decode_batch(data, listed[n], n)
        since = self.generation if self._base() else 0
        folded = self._folded
        if folded is None or {n for n in listed if n <= folded.top} != self._folded_numbers:
            folded = self._folded = fold({n: self._batches[n] for n in listed}, since=since)
            self._folded_numbers = set(listed)
        else:  # the batches after those folded already
            new = {n: self._batches[n] for n in listed if n > folded.top}
            fold(new, since=since, into=folded)
            self._folded_numbers |= new.keys()
        return folded

    def _base(self) -> tuple[RunState, int] | None:
        """The state of the seal this generation follows and the last batch number it folded."""
        return self.store.base_of(self.run_id, self.generation) if self._batched else None

    def _next_number(self, folded: Folded) -> int:
        """The number of a new batch: after every batch listed, and after those the seal this
        generation follows folded (numbers a compacted run gave back stay unused)."""
        base = self._base()
        return max(folded.top, base[1] if base else 0) + 1

    def _create_batch(self, batch: Batch) -> bool:
        """Create ``batch`` under its number; ``False`` if the number is taken. On a store
        that compacts sealed runs, a batch created once the seal of this generation exists
        counts only if the seal names it; else it is refused (:class:`RunStateError`)."""
        batch, data = batch.stored()
        if not self._backend.put_if_absent(batch_key(self.run_id, batch.n), data):
            return False
        if self.store.compacts and self._backend.exists(self._seal_key):
            seal = self.store._seal_at(self.run_id, self.generation)
            folded = seal.get("folded") if seal is not None else None
            if not (isinstance(folded, (list, tuple)) and [batch.n, batch.sum] in [list(f) for f in folded]):
                top = seal.get("top") if seal is not None else None
                if isinstance(top, int) and batch.n <= top:  # a number the end gave back: given back again
                    self._backend.delete(batch_key(self.run_id, batch.n))
                raise self._sealed_error()
        self._batches[batch.n] = batch
        return True

    def _refuse_fenced(self, folded: Folded) -> None:
        if folded.deleted is not None:
            raise RunStateError(f"run {self.run_id} is deleted; it accepts nothing more")
        if folded.refuses(self.generation):
            raise self._sealed_error()

    def _append(self, params: dict[str, str], tags: Mapping[str, str | None], points: list[MetricPoint],
                logged: tuple[str, int, int] | None = None, refs: Mapping[str, str] | None = None,
                artifacts: Sequence[BatchArtifact] = ()) -> tuple[Folded, int]:
        """Write one batch record numbered after every batch there is (list, create
        ``max + 1``, on a lost race list again). Its params are checked against the batches
        below it first: a param bound there to another value raises, with nothing written;
        those bound to the same value are left out. A run fenced (ended or deleted) below
        the number refuses the batch. ``logged``: the write-ahead log range ``points`` are.
        ``refs``: records just bound (key under the run -> digest) that the batch lists.
        ``artifacts`` bound below the number are left out (the caller compares them with
        the batches below, returned with the batch's number, 0 if none was written); one
        that would make a bound file a directory or the reverse raises
        :class:`ArtifactPathConflictError`, with nothing written. A batch that lists records
        or binds artifacts is witnessed: the run's witness record then holds its number. A
        fenced run needs no list (its seal or deletion decides), so a batch of ``refs`` alone
        is then not written."""
        with self._batch_lock:
            for attempt in range(BATCH_ATTEMPTS):
                folded = self._sync_batches(self._backend.list(batches_prefix(self.run_id)))
                if refs and not (params or tags or points or artifacts) and folded.refuses(self.generation):
                    return folded, 0
                self._refuse_fenced(folded)
                base = self._base()
                fresh = {}
                for key, value in params.items():
                    bound = base[0].params.get(key) if base and key in base[0].params else folded.params.get(key)
                    if bound is None:
                        fresh[key] = value
                    elif bound != value:
                        raise ImmutableArtifactError(f"param {key!r} of run {self.run_id}", bound, value, _PARAM_HINT)
                arts: list[BatchArtifact] = []
                files: dict[str, object] = dict(folded.artifacts)
                dirs = set(folded.dirs)
                for a in artifacts:
                    if a[0] in folded.artifacts:
                        continue
                    clash = path_conflict(a[0], files, dirs)
                    if clash is not None:  # a bound file it would lie under, or itself a directory: a file in it
                        held = clash if clash in files else next((f for f in files if f.startswith(clash + "/")), clash)
                        raise ArtifactPathConflictError(self.run_id, a[0], held)
                    arts.append(a)
                    files[a[0]] = a
                    dirs.update(parents(a[0]))
                if not fresh and not tags and not points and not refs and not arts:
                    return folded, 0  # bound already, to the same values
                batch = Batch(self._next_number(folded), fresh, list(tags.items()), points, time=now_ms(),
                              g=self.generation, wal=logged, refs=dict(refs or {}), artifacts=arts)
                if self._create_batch(batch):
                    if refs or arts:
                        self._witness(batch.n)
                    return folded, batch.n
                time.sleep(random.uniform(0, 0.001 * min(attempt + 1, 50)))  # another writer's batch took it
        raise StoreUnavailableError(
            f"run {self.run_id}: could not number a batch record in {BATCH_ATTEMPTS} tries, as many other "
            "writers logged to the run at once; try again"
        )

    def _witness(self, n: int) -> None:
        """Create the witness of batch ``n`` (one that lists bound records); remove the one this
        handle created before (a lower number: the highest witness stays)."""
        self._backend.put_if_absent(witness_key(self.run_id, n), witness_record(n))
        before, self._witnessed = self._witnessed, n
        if before is not None and before < n:
            with contextlib.suppress(CasstoreError):
                self._backend.delete(witness_key(self.run_id, before))

    def fence_deleted(self, reason: str) -> None:
        """Version 4: append the batch that marks the run deleted (nothing numbered after it
        counts), unless the run is fenced already; at the first free number after the
        batches listed, as a close is (:meth:`_create_fence`)."""
        with self._batch_lock:
            folded = self._sync_batches(self._backend.list(batches_prefix(self.run_id)))
            if folded.deleted is not None or folded.refuses(self.generation):
                return
            batch = Batch(self._next_number(folded), deleted={"time": now_ms(), "reason": reason}, time=now_ms(),
                          g=self.generation)
            with contextlib.suppress(RunStateError):  # sealed meanwhile: the deletion marker is what readers go by
                self._create_fence(batch)

    def log_input(self, record: dict[str, Any]) -> None:
        """Record a dataset the run used: ``name``, ``digest``, ``source_type``, ``source``,
        ``schema``, ``profile``, ``context`` (strings) and ``tags``. Once per digest and
        context: the same again is a no-op."""
        rec: dict[str, Any] = {"v": RECORD_VERSION, **{k: str(record.get(k, "")) for k in INPUT_FIELDS},
               "tags": {str(k): str(v) for k, v in (record.get("tags") or {}).items()}, "logged_at": now_ms()}
        check_input(rec, "dataset input")
        self._check_open()
        k = layout.input_key(self.run_id, rec["digest"], rec["context"])
        if self._backend.put_if_absent(k, encode_record(rec)):
            self._remember(k, rec)
        if self._sealed_or_closed(listed=False):
            view = self.store.get_run(self.run_id, flush=False, warn=False)
            if not any(i["digest"] == rec["digest"] and i["context"] == rec["context"] for i in view.inputs):
                raise RunStateError(
                    f"run {self.run_id} was ended by another writer while dataset {rec['name']!r} was being logged; "
                    "its seal does not include it. Log it in a new run."
                )

    def delete_tag(self, key: str) -> None:
        """Delete a tag: a tag record marked ``deleted`` (the latest record wins, so setting the
        tag again brings it back). :class:`ObjectNotFoundError` if the run has no such tag."""
        key = check_name("tag", key)
        if self._batched:
            if key not in self.store.get_run(self.run_id, flush=False, warn=False).tags:
                raise ObjectNotFoundError(f"run {self.run_id} has no tag {key!r} to delete")
            self._append({}, {key: None}, [])
            return
        self._check_open()
        if key not in self.store.get_run(self.run_id, flush=False, warn=False).tags:
            raise ObjectNotFoundError(f"run {self.run_id} has no tag {key!r} to delete")
        k = layout.tag_key(self.run_id, key)
        rec = {"v": RECORD_VERSION, "key": key, "value": "", "time": now_ms(), "deleted": True}
        self._backend.put_if_absent(k, encode_record(rec))
        self._remember(k, rec)
        if self._sealed_or_closed(listed=False) and key in self.store.get_run(self.run_id, flush=False, warn=False).tags:
            raise RunStateError(
                f"run {self.run_id} was ended by another writer while tag {key!r} was being deleted; "
                "its seal still holds the tag"
            )

    # ---- metrics -----------------------------------------------------------------

    def log_metric(self, key: str, value: float, step: int = 0, timestamp_ms: int | None = None) -> None:
        """Buffer one metric point; it is written with the next batch."""
        point = self._point(key, value, step, timestamp_ms)
        if self._digest is not None:
            raise self._sealed_error()
        self._buffer(point)

    def _buffer(self, point: MetricPoint) -> None:
        """Append the point to this handle's write-ahead log, then buffer it."""
        due = self._metrics.add(point, self._wal_writer())
        hold(self)
        if due:
            self.flush_metrics()

    @staticmethod
    def _point(key: str, value: float, step: int | None, timestamp_ms: int | None) -> MetricPoint:
        """A checked metric point (``step`` None is 0, ``timestamp_ms`` None is now)."""
        check_name("metric", key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            try:
                value = float(value)
            except (TypeError, ValueError) as e:
                raise InvalidInputError(
                    f"metric {key!r} must be a number, got {type(value).__name__} {value!r}"
                ) from e
        value = float(value)
        at = check_whole(0 if step is None else step, f"metric {key!r}: step")
        ts = now_ms() if timestamp_ms is None else check_whole(timestamp_ms, f"metric {key!r}: timestamp (ms)")
        return (key, value, at, ts)

    def _wal_writer(self) -> WalWriter | None:
        with self._known_lock:
            if self._wal is None and self.store.wal is not None:
                self._wal = self.store.wal.writer(self.run_id)
            return self._wal

    def flush_metrics(self) -> None:
        """Write the buffered points as one metrics segment."""
        with self._write_lock:
            points, seqs = self._metrics.take()
            if not points:
                release(self)
                return
            if self._batched:
                try:
                    self._append({}, {}, points, self._logged(seqs))
                except RunStateError:
                    release(self)
                    if self._backend.exists(self._seal_key):  # an end here may have taken them from the log
                        self._check_points_sealed(points)
                        return
                    raise RunStateError(
                        f"run {self.run_id} was ended or deleted while {len(points)} metric point(s) were "
                        "buffered; they were not recorded. Log them in a new run."
                    ) from None
                except BaseException:
                    self._metrics.put_back(points, seqs)
                    raise
                if not len(self._metrics):
                    release(self)
                return
            try:
                if self._digest is not None or self._backend.exists(self._seal_key):
                    raise RunStateError(
                        f"run {self.run_id} was ended and sealed while {len(points)} metric point(s) were "
                        "buffered; they were not recorded. Log them in a new run."
                    )
                key = layout.metric_segment_key(self.run_id)
                rec: dict[str, Any] = {"v": RECORD_VERSION, "points": [list(p) for p in points]}
                logged = self._logged(seqs)
                if logged is not None:
                    rec["wal"] = list(logged)  # the logged points it carries
                self._backend.put_if_absent(key, encode_record(rec))
            except RunStateError:
                release(self)
                raise
            except BaseException:
                self._metrics.put_back(points, seqs)
                raise
            self._remember(key, rec)
            if not len(self._metrics):
                release(self)
            check = self._digest is None
        if check and self._sealed_or_closed():  # outside the lock: it may complete another writer's end
            self._check_points_sealed(points)

    def _logged(self, seqs: list[int]) -> tuple[str, int, int] | None:
        """The range of this handle's write-ahead log that points numbered ``seqs`` are."""
        if self._wal is None or not seqs or seqs[0] < 0:
            return None
        return (self._wal.name, seqs[0], seqs[-1])

    def _check_points_sealed(self, points: list[MetricPoint]) -> None:
        """The run was sealed while a segment was written: fail unless the seal holds its points."""
        sealed = Counter(map(point_key, self.store.get_run(self.run_id, flush=False, warn=False).points))
        lost = sum((Counter(map(point_key, points)) - sealed).values())
        if lost:
            raise RunStateError(
                f"run {self.run_id} was ended by another writer while {len(points)} metric point(s) were being "
                f"written; the run's seal lacks {lost} of them. Log them in a new run."
            )

    def _flush_if_due(self) -> None:
        if self._metrics.due():
            self.flush_metrics()

    def _flush_at_exit(self) -> None:
        self.flush_metrics()
        self._close_wal()

    def _close_wal(self) -> None:
        """Close this handle's metric log, removing it: every point in it is in a segment."""
        with self._known_lock:
            if self._wal is not None and not len(self._metrics):
                self._wal.close(remove=True)
                self._wal = None

    def _forget_after_fork(self) -> None:
        # points buffered by the parent are the parent's to write, its log too
        if self._wal is not None:
            self._wal.forget()
            self._wal = None
        self._metrics = MetricBuffer(self.store.metric_flush_points, self.store.metric_flush_seconds)
        self._write_lock = threading.Lock()
        self._known_lock = threading.Lock()

    # ---- the seal ----------------------------------------------------------------

    def end(self, status: str = "FINISHED", end_time: int | None = None) -> str:
        """Seal the run with ``status``; return the run digest. ``end_time`` (ms since the
        epoch) defaults to now.

        Idempotent: if the run is already sealed (by this or another writer), its existing
        digest is returned. The first seal wins.
        """
        if status not in RUN_STATUSES:
            raise InvalidInputError(f"cannot end run {self.run_id} with status {status!r}: use one of {RUN_STATUSES}")
        if end_time is not None:  # milliseconds since the epoch, checked as metric timestamps are
            end_time = check_whole(end_time, f"end_time={end_time!r} of run {self.run_id}")
            if end_time < 0:
                raise InvalidInputError(f"cannot end run {self.run_id} at end_time={end_time}: give milliseconds "
                                        "since the epoch, or nothing for now")
        if self._digest is not None:
            return self._digest
        if self._batched:  # this handle's points go in the closing batch
            self.store._flush_local(self.run_id, but=self)
            return self._end_batched(status, end_time)
        try:
            self.flush_metrics()
        except RunStateError:
            pass  # sealed by someone else: their seal stands
        self.store._flush_local(self.run_id)  # points other handles of this process still hold
        with self._write_lock:
            seal = self.store._seal_at(self.run_id, self.generation)
            if seal is not None:
                self._digest = str(seal["digest"])
                self._close_wal()
                return self._digest
            status, end_time = self._close(status, now_ms() if end_time is None else end_time)
            with self._known_lock:
                known = dict(self._known)
            state = read_live_state(self._backend, self.run_id, known, wal=self.store.wal)
            data = pack(self._manifest(state, status, end_time))
            digest = hash_bytes(data)
            self._backend.put_blob(layout.manifest_key(self.run_id, digest), data)
            self._backend.flush()
            seal_rec = {"v": RECORD_VERSION, "digest": digest, "status": status, "end_time": end_time}
            if self._backend.put_if_absent(self._seal_key, encode_record(seal_rec)):
                self._backend.flush()
                self._digest = digest
                self.store.discard_dead_logs(self.run_id)  # their points are in the manifest
            else:
                won = self.store._seal_at(self.run_id, self.generation)
                if won is None:
                    raise CorruptRecordError(f"run {self.run_id}: {self._seal_key} was refused as taken but cannot be read")
                self._digest = str(won["digest"])
        self._close_wal()
        return self._digest


    def _close(self, status: str, end_time: int) -> tuple[str, int]:
        """Before version 4: create the closing marker before the run is listed, so a writer
        whose record comes after the listing finds it and checks the seal (or seals the run
        itself, with the marker's status and end time); return the status and end time of
        the end (an earlier or concurrent end's, if its marker is there)."""
        marker = {"v": RECORD_VERSION, "status": status, "end_time": end_time}
        if self._backend.put_if_absent(self._closing_key, encode_record(marker)):
            return status, end_time
        try:
            held = decode_record(self._backend.get(self._closing_key), f"record {self._closing_key}")
        except (CorruptRecordError, ObjectNotFoundError):
            return status, end_time  # a damaged marker only gives the status; the first seal wins
        if held.get("status") in RUN_STATUSES and isinstance(held.get("end_time"), int):
            return str(held["status"]), int(held["end_time"])
        return status, end_time

    def _manifest(self, state: RunState, status: str, end_time: int) -> dict[str, Any]:
        """The manifest an end of this handle's generation seals; a resumed run's names the
        digest of the seal it followed, so every earlier run digest stays verifiable."""
        manifest = manifest_of(state, status, end_time)
        if self.generation > 0:
            previous = self.store._seal_at(self.run_id, self.generation - 1)
            if previous is None:
                raise CorruptRecordError(
                    f"run {self.run_id} was resumed into generation {self.generation} but its seal "
                    f"{layout.seal_key(self.run_id, self.generation - 1)} is missing; the store is damaged"
                )
            manifest.update(generation=self.generation, previous=str(previous["digest"]))
        return manifest

    def _end_batched(self, status: str, at: int | None) -> str:
        """Version 4: list the run once, create the closing batch of this generation (with
        the points still buffered) at the first free number after every batch listed (see
        :meth:`_create_fence`), then create the seal, which holds the manifest of what the
        batches up to the close and the run's other records say. A closing batch already
        there (an end that stopped before its seal) is completed with its own status and end
        time; a seal already there is the run's."""
        with self._write_lock, self._batch_lock:
            points, seqs = self._metrics.take()
            release(self)
            taken = [points]  # emptied once a close holds them or they are back in the buffer
            try:
                return self._end_taking(status, at, points, seqs, taken)
            except BaseException:
                if taken[0]:  # the store failed, or Ctrl-C, before a close held them: back in the
                    self._metrics.put_back(points, seqs)  # buffer, for the next end or the flush at exit
                    hold(self)
                raise

    def _end_taking(self, status: str, at: int | None, points: list[MetricPoint], seqs: list[int],
                    taken: list[list[MetricPoint]]) -> str:
        """The end of :meth:`_end_batched`, with the buffered ``points`` it took."""
        mine: Batch | None = None  # the closing batch this end created
        # a listing again only after the close landed past the listing (probes lost to other
        # writers' batches), or when a batch listed was removed (sealed meanwhile): a few times
        for _ in range(BATCH_ATTEMPTS):
            keys = sorted(self._backend.list(layout.run_prefix(self.run_id)))
            if self._seal_key in keys and (done := self._end_sealed(points)) is not None:
                return done
            try:
                folded = self._sync_batches(keys)
            except BatchVanished:
                continue  # sealed by another end meanwhile: the next listing has the seal
            except RunStateError:  # a batch listed was removed by the end that sealed the run meanwhile
                if (done := self._end_sealed(points)) is None:
                    raise
                return done
            if folded.deleted is not None:
                raise RunStateError(f"run {self.run_id} is deleted; it cannot be ended")
            close = folded.closes.get(self.generation)
            with self._known_lock:
                known = dict(self._known)
            if close is None:
                end_time = now_ms() if at is None else at
                first = self._next_number(folded)
                try:
                    mine = self._create_fence(Batch(first, points=points, close={"status": status, "end_time": end_time},
                                                    time=end_time, g=self.generation, wal=self._logged(seqs)))
                    taken[0] = []
                except RunStateError:  # sealed meanwhile, by an end that gave numbers back (compacting)
                    if (done := self._end_sealed(points)) is None:
                        raise
                    return done
                # no barrier here: on S3 the close is stored before the seal is sent; on a local
                # disk a power loss ends every writer, and no handle opens a sealed generation
                if mine.n != first:
                    continue  # batches landed between the listing and the close: list them (and what they list)
                keys.append(batch_key(self.run_id, mine.n))
                close = mine
            elif mine is None and points:
                self._metrics.put_back(points, seqs)  # not in the close: checked below, after the seal
                points = taken[0] = []
            status, end_time = str(close.close["status"]), int(close.close["end_time"])  # type: ignore[index]
            if mine is not None and mine.n != close.n:
                # another end's close came first, and this one's points are in a batch that does not
                # count: not covered by it, they are still pending in this handle's log
                keys = [k for k in keys if k != batch_key(self.run_id, mine.n)]
            keys += self._listed_not_seen(keys, close.n)
            # with the logged points no batch carries (dead writers' and live ones' on this machine)
            base = self._base()
            try:
                state = read_live_state(self._backend, self.run_id, known, keys, batches=self._batches,
                                        batches_upto=close.n, wal=self.store.wal,
                                        base=base[0] if base else None, generation=self.generation)
            except BatchVanished:
                continue  # sealed by another end meanwhile
            data = pack(self._manifest(state, status, end_time))
            digest = hash_bytes(data)
            if self.store.manifest_objects:  # before version 5, the manifest as an object of its own too
                self._backend.put_blob(layout.manifest_key(self.run_id, digest), data)
            seal = {"v": RECORD_VERSION, "digest": digest, "status": status, "end_time": end_time, "manifest": data}
            if not self.store.manifest_objects:  # what the seal folded, so compacting gives numbers back safely
                upto = sorted(n for n in self._batches if n <= close.n and batch_key(self.run_id, n) in keys)
                seal.update(top=close.n, folded=[[n, self._batches[n].sum] for n in upto])
            if self._backend.put_if_absent(self._seal_key, encode_record(seal)):
                # the seal, and the run's entry in its experiment, are what must survive a power
                # loss: the seal holds the rest, which compacting removes
                entry = self._entry_key
                if entry is None and self._backend.local:  # only a local disk's barrier names keys
                    entry = self._entry_key = self.store.entry_key(self.experiment_id, self.run_id)
                self._backend.flush_only([self._seal_key] + ([entry] if entry else []))
                self._digest = digest
                if self.store.compacts:  # batches not read here are kept: they may hold inline content
                    unread = {n for k in keys if k.startswith(batches_prefix(self.run_id))
                              and (n := batch_number(k)) is not None and n not in self._batches}
                    remove_redundant(self._backend, self.run_id, keys, close.n,
                                     holding=holding_inline(self._batches.values()) | unread)
                self.store.discard_dead_logs(self.run_id)  # their points are in the manifest
                self.store.publish_summary(self.run_id, state, status, end_time, digest, self.generation)
            else:
                won = self.store._seal_at(self.run_id, self.generation)
                if won is None:
                    raise CorruptRecordError(f"run {self.run_id}: {self._seal_key} was refused as taken but cannot be read")
                self._digest = str(won["digest"])
            lost, _ = self._metrics.take()
            if mine is not None and mine.n != close.n:
                lost = points + lost
            if lost:  # not in the close: in the seal only if an end here took them from the log
                self._check_points_sealed(lost)
            self._close_wal()
            return self._digest
        raise StoreUnavailableError(f"run {self.run_id}: could not read its batch records to seal it; try again")

    def _listed_not_seen(self, keys: list[str], upto: int) -> list[str]:
        """The records that the batches among ``keys`` numbered up to ``upto`` list (``refs``)
        but that ``keys`` lacks. A listing is no snapshot (a directory read, S3's pages): it can
        show a batch without a record its writer bound before it, and that writer, whose batch
        is below the close, counts on the seal holding the record."""
        seen = set(keys)
        prefix = layout.run_prefix(self.run_id)
        missed = {prefix + rel for k in keys if (n := batch_number(k)) is not None and n <= upto
                  and k.startswith(batches_prefix(self.run_id)) and n in self._batches
                  for rel in self._batches[n].refs}
        return sorted(missed - seen)

    def _end_sealed(self, points: list[MetricPoint]) -> str | None:
        """The run's seal of this generation was found: take its digest (None if it cannot be
        read) and check that it holds ``points`` (this end's, taken from the buffer)."""
        seal = self.store._seal_at(self.run_id, self.generation)
        if seal is None:
            return None
        self._digest = str(seal["digest"])
        lost = points + self._metrics.take()[0]
        if lost:  # an end on this machine may have taken them from the log
            self._check_points_sealed(lost)
        self._close_wal()
        return self._digest

    def _create_fence(self, batch: Batch) -> Batch:
        """Create the fence ``batch`` (a close or a deletion, which no writer checks anything
        against) at its number or, each time that is taken, at the next one, with no listing
        between tries; return the batch created. A number is tried only once the one below it
        is taken, so every batch below the fence exists when it is created, as for any batch
        (docs/design.md, "Numbering"); a writer needs a listing and a create for each number,
        this a create, so it catches up with any number of writers appending back to back.
        :class:`RunStateError` when the seal of this generation came first (``_create_batch``)."""
        n = batch.n
        for _ in range(FENCE_PROBES):
            if self._create_batch(replace(batch, n=n)):
                return self._batches[n]
            n += 1
        raise StoreUnavailableError(
            f"run {self.run_id}: other writers took {FENCE_PROBES} batch numbers in a row before its "
            f"{'closing' if batch.close is not None else 'deleting'} batch could take one; try again"
        )
