"""The search index: run summaries published beside the store, merged into a local SQLite cache.

A **summary** is what a search needs of a run: id, experiment, name, status, start and end
times, digest, whether it is deleted, its params, tags and latest metrics. Writers of a
version-4 store **publish** summaries as immutable, self-checking **segments**,
``index/runs/<level>-<seq>``: one segment of level 0 when a run is sealed, and one when it
is deleted (before its deletion marker). Segments are merged by level (size-tiered, as an
LSM tree): a writer that has just published lists the segments one time in
:data:`COMPACT_EVERY` and, for each level holding :data:`FAN_IN` or more, writes one
segment of the next level holding their summaries, then deletes them. A store of ``n`` runs
thus has at most about ``(FAN_IN - 1) * log_FAN_IN(n)`` segments (one listing page), plus
a few duplicates when writers compact at once; how many writers there are changes nothing.

A **reader** keeps a SQLite database per store under the user's cache directory (as the stat
cache). Each search lists the runs the store holds (the experiments' run index, the source of
truth), lists the segments and reads those it has not merged yet. A run that no segment
summarises (still open, sealed by a writer that died before publishing, a store older than
version 4) is read from the store: once if it is sealed (it can no longer change), at every
search while it is open. A summary taken from a segment is checked against the run's seal
(its digest) before the run is first returned, once per machine; a deletion claimed by a
segment is checked against the run's deletion marker. So the index is never the source of
truth: a missing, stale or damaged segment costs reads, never a wrong answer. A damaged
segment (its check fails) is left out, said once, and its runs are read from the store; the
next compaction drops it. Filters and ordering run as SQL over the cached summaries.

On S3, in a store of version 6, a reader lists an experiment's entries in full once, then
only those named after a point (:meth:`RunIndex.experiment_runs`): entries are named by
time (:func:`casstore.runs.layout.experiment_entry_key`, on the service's clock), an entry the last
listing missed was written after it began, hence after the greatest ``LastModified`` it
saw less its duration, and its writer named it no more than :data:`NOTE_AFTER` seconds
before the service's clock, or wrote a note that is (``RunStore._note_entry``; a resumption
always does). The point is that greatest time less the listing's duration, NOTE_AFTER and
a margin; stores of older versions, whose writers may name runs at random, and local
stores list every entry.

Reading sends no write to the store: listing, searching, showing and verifying work with
read-only credentials.
"""

from __future__ import annotations

import atexit
import base64
import json
import logging
import math
import os
import re
import sqlite3
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import msgpack
from blake3 import blake3

from casstore.backend.base import Backend
from casstore.exceptions import (
    CasstoreError,
    CorruptRecordError,
    DamagedRunWarning,
    InvalidInputError,
    ObjectNotFoundError,
)
from casstore.objects import ObjectStore
from casstore.objects.codec import pack, pack_checked, unpack, unpack_checked
from casstore.runs import layout
from casstore.runs.records import ModelRef, RunView
from casstore.runs.search import NULL_OPS, RUN_ATTRIBUTES, Comparison, OrderKey, like_to_regex
from casstore.utils.mlflow_tags import MLFLOW_USER



class RunStore(Protocol):
    """What the index needs of the run store (:class:`casstore.runs.store.RunStore` is one):
    named here, not imported, so the runs layer has no import cycle."""

    backend: Backend
    objects: ObjectStore
    url: str
    batched: bool

    def get_run(self, run_id: str, *, flush: bool = True) -> RunView: ...

    def _seal_at(self, run_id: str, generation: int) -> dict[str, Any] | None: ...

__all__ = ["INDEX_PREFIX", "FAN_IN", "COMPACT_EVERY", "NOTE_AFTER", "RunIndex", "summary_of", "segment_key", "Page"]

log = logging.getLogger("casstore.index")

INDEX_PREFIX = "index/runs/"
#: segments of one level merged into one of the next
FAN_IN = 16
#: a writer looks for segments to merge after one publication in this many (on average)
COMPACT_EVERY = 2
_SCHEMA = 4
#: a writer notes a run whose entry is named more than this many seconds before the service's
#: clock when written (see ``RunStore._note_entry``); readers list back this far and more
NOTE_AFTER = 60.0
_SEGMENT = re.compile(r"^(\d{1,2})-([0-9]{20}-\d+-[0-9a-f]{8})$")


def segment_key(level: int) -> str:
    return f"{INDEX_PREFIX}{level}-{layout.unique_suffix()}"


def _level(key: str) -> int | None:
    m = _SEGMENT.match(key[len(INDEX_PREFIX):]) if key.startswith(INDEX_PREFIX) else None
    return int(m.group(1)) if m else None


def summary_of(view: RunView, generation: int = 0) -> dict[str, Any]:
    """A run's summary (what the index holds of it), from its view of ``generation`` (the
    times the run was resumed after ending)."""
    return {
        "generation": generation,
        "run_id": view.run_id, "experiment_id": view.experiment_id, "run_name": view.run_name,
        "status": view.status, "start_time": view.start_time, "end_time": view.end_time,
        "digest": view.digest, "deleted": view.deleted, "params": dict(view.params),
        "tags": dict(view.tags), "metrics": dict(view.metrics),
        "models": {name: ref.digest for name, ref in view.models.items()},
        "artifacts": [view.artifact_count, view.artifact_bytes],
    }


def deletion_summary(run_id: str) -> dict[str, Any]:
    """What a deletion publishes: the run id and the claim that it is deleted."""
    return {"run_id": run_id, "deleted": True}


def _checked_summary(s: Any, where: str) -> dict[str, Any]:
    if not isinstance(s, dict) or not layout.is_run_id(s.get("run_id")):
        raise CorruptRecordError(f"{where}: a summary without a run id")
    if s.get("deleted") is True and "digest" not in s:
        return s
    for name, kind in (("experiment_id", str), ("run_name", str), ("status", str), ("start_time", int),
                       ("digest", str), ("params", dict), ("tags", dict), ("metrics", dict)):
        if not isinstance(s.get(name), kind) or isinstance(s.get(name), bool):
            raise CorruptRecordError(f"{where}: summary of run {s['run_id']} has no valid {name!r}")
    return s


def decode_segment(data: bytes, where: str) -> list[dict[str, Any]]:
    """The summaries of a segment, after its self-check."""
    rec = unpack_checked(data, f"index segment {where}", required=True)
    if not isinstance(rec, dict) or not isinstance(rec.get("runs"), list):
        raise CorruptRecordError(f"index segment {where} is not a segment")
    return [_checked_summary(s, where) for s in rec["runs"]]


def _merge(summaries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary per run: the sealed one, with any deletion claim folded in."""
    out: dict[str, dict[str, Any]] = {}
    for s in summaries:
        cur = out.get(s["run_id"])
        if cur is None:
            out[s["run_id"]] = dict(s)
        elif "digest" in s and "digest" not in cur:
            out[s["run_id"]] = {**s, "deleted": bool(s.get("deleted")) or bool(cur.get("deleted"))}
        elif s.get("deleted"):
            cur["deleted"] = True
    return list(out.values())


# ---- publishing (writers) ----------------------------------------------------------------------


def publish(store: RunStore, summaries: list[dict[str, Any]]) -> None:
    """Publish summaries as a level-0 segment; now and then merge full levels."""
    if not summaries:
        return
    store.backend.put_if_absent(segment_key(0), pack_checked({"v": 1, "level": 0, "runs": summaries}))
    if uuid.uuid4().int % COMPACT_EVERY == 0:
        try:
            compact(store)
        except CasstoreError as e:  # a compaction is an optimisation: the next writer tries again
            log.info("casstore: index compaction skipped: %s", e)


#: seconds a writer holds the summaries of the runs it ended before publishing them together
PUBLISH_DELAY = 1.0
_pending: dict[int, tuple[RunStore, list[dict[str, Any]]]] = {}
_pending_lock = threading.Lock()
_publish_lock = threading.Lock()
_timer: threading.Timer | None = None


def publish_soon(store: RunStore, summary: dict[str, Any]) -> None:
    """Publish ``summary`` within :data:`PUBLISH_DELAY` seconds, in one segment with the other
    summaries this process has by then (a process ending many runs writes a segment a
    second, not one a run). A process killed before loses them: its runs are then read
    from the store by searches, as runs no segment covers are."""
    global _timer, _at_exit, _shut
    with _pending_lock:
        _pending.setdefault(id(store), (store, []))[1].append(summary)
        if not _at_exit and not _shut:
            # registered now, after the store's file system and its thread pools were set up, and
            # with the hooks that run before those pools are shut down (latest registered first)
            try:
                getattr(threading, "_register_atexit", atexit.register)(_at_shutdown)
                _at_exit = True
            except RuntimeError:  # the interpreter is exiting already
                _shut = True
        if not _shut and _timer is None:
            _timer = threading.Timer(PUBLISH_DELAY, flush_pending)
            _timer.daemon = True
            _timer.start()
        now = _shut
    if now:  # a run ended as the interpreter exits: no later hook or timer would publish it
        flush_pending(store)


def _at_shutdown() -> None:
    global _shut
    _shut = True
    flush_pending()


def flush_pending(store: RunStore | None = None) -> None:
    """Publish the summaries waiting in this process (for ``store`` only, if given)."""
    global _timer
    with _pending_lock:
        if store is None:
            todo = list(_pending.values())
            _pending.clear()
            _timer = None
        else:
            entry = _pending.pop(id(store), None)
            todo = [entry] if entry else []
    with _publish_lock:  # one publication (and merge) at a time in a process; waits for one under way
        for st, summaries in todo:
            try:
                publish(st, summaries)
            except CasstoreError as e:
                log.warning("casstore: %d run summaries were not published to the search index (%s); searches "
                            "read those runs from the store", len(summaries), e)


_at_exit = False
_shut = False  # the interpreter is exiting: summaries are published as they come


def _forget_pending_after_fork() -> None:
    global _timer, _pending_lock, _publish_lock
    _pending.clear()  # the parent's to publish
    _timer = None
    _pending_lock = threading.Lock()
    _publish_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pending_after_fork)


def compact(store: RunStore, fan_in: int | None = None) -> int:
    """Merge every level holding ``fan_in`` segments or more into one segment of the next
    level, deleting the merged ones; return how many segments were merged. A damaged
    segment is deleted (its runs are read from the store until a rebuild summarises them)."""
    backend = store.backend
    fan_in = fan_in or FAN_IN
    by_level: dict[int, list[str]] = {}
    for key in backend.list(INDEX_PREFIX):
        lv = _level(key)
        if lv is not None:
            by_level.setdefault(lv, []).append(key)
    merged = 0
    level = 0
    while level <= max(by_level, default=-1):
        keys = sorted(by_level.get(level, []))
        if len(keys) >= fan_in:
            summaries: list[dict[str, Any]] = []
            for key, data in zip(keys, _get_many(store, keys)):
                if data is None:
                    continue  # merged by another writer meanwhile
                try:
                    summaries.extend(decode_segment(data, key))
                except CorruptRecordError as e:
                    log.warning("casstore: %s; it is dropped from the index", e)
            new = segment_key(level + 1)
            backend.put_if_absent(new, pack_checked({"v": 1, "level": level + 1, "runs": _merge(summaries)}))
            for key in keys:
                try:
                    backend.delete(key)
                except ObjectNotFoundError:
                    pass
            by_level.setdefault(level + 1, []).append(new)
            merged += len(keys)
        level += 1
    return merged


def _get_many(store: RunStore, keys: Sequence[str]) -> list[bytes | None]:
    from casstore.runs.state import get_many

    return get_many(store.backend, list(keys))


# ---- the local cache (readers) ---------------------------------------------------------------


class Page(list[RunView]):
    """One page of search results; ``token`` names the next page (``None`` after the last)."""

    token: str | None = None


def _cache_path(store: RunStore) -> str | None:
    from casstore.objects.statcache import cache_dir

    if store.url.startswith("memory://"):
        return None  # a memory store lives and dies with its process: so does its index
    ident = blake3(f"{store.url}\n{store.objects.config.created!r}".encode()).hexdigest()[:32]
    return os.path.join(cache_dir(), "index", f"{ident}.sqlite")


_DDL = """
CREATE TABLE IF NOT EXISTS runs (
  rid INTEGER PRIMARY KEY, run_id TEXT NOT NULL UNIQUE, experiment_id TEXT, run_name TEXT, status TEXT,
  start_time INTEGER, end_time INTEGER, digest TEXT, user_id TEXT, deleted INTEGER NOT NULL DEFAULT 0,
  sealed INTEGER NOT NULL DEFAULT 0, verified INTEGER NOT NULL DEFAULT 0, body BLOB,
  generation INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS claims (run_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS params (rid INTEGER, key TEXT, value TEXT, PRIMARY KEY (rid, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tags (rid INTEGER, key TEXT, value TEXT, PRIMARY KEY (rid, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS metrics (rid INTEGER, key TEXT, value REAL, PRIMARY KEY (rid, key)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS params_kv ON params (key, value);
CREATE INDEX IF NOT EXISTS tags_kv ON tags (key, value);
CREATE INDEX IF NOT EXISTS metrics_kv ON metrics (key, value);
CREATE INDEX IF NOT EXISTS runs_start ON runs (start_time DESC, run_id);
CREATE TABLE IF NOT EXISTS segments (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS listed (experiment_id TEXT, run_id TEXT, PRIMARY KEY (experiment_id, run_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS resumed (run_id TEXT PRIMARY KEY, generation INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS listings (experiment_id TEXT PRIMARY KEY, after TEXT NOT NULL, mark REAL NOT NULL);
CREATE TABLE IF NOT EXISTS info (k TEXT PRIMARY KEY, v TEXT);
CREATE TABLE IF NOT EXISTS lost (run_id TEXT PRIMARY KEY, why TEXT NOT NULL);
"""


_RUN_COLUMNS = ("run_id, experiment_id, run_name, status, start_time, end_time, digest, user_id, deleted, sealed, "
                "verified, body, generation")


def _drop_values(db: sqlite3.Connection, run_ids: Sequence[str]) -> None:
    """Remove the cached params, tags and metrics of ``run_ids``."""
    ids = json.dumps(list(run_ids))
    for table in ("params", "tags", "metrics"):
        db.execute(f"DELETE FROM {table} WHERE rid IN (SELECT rid FROM runs WHERE run_id IN "
                   "(SELECT value FROM json_each(?)))", (ids,))


def _body(s: Mapping[str, Any]) -> bytes:
    """A summary as the cache keeps it: msgpack (not canonical: the cache is local, and
    canonical packing cost more than the rest of a load)."""
    return msgpack.packb(s, use_bin_type=True)  # type: ignore[no-any-return]


def _like(pattern: str, value: str | None, ci: int) -> int:
    if value is None:
        return 0
    return 1 if _like_re(pattern, bool(ci)).fullmatch(value) else 0


_LIKE_CACHE: dict[tuple[str, bool], re.Pattern[str]] = {}


def _like_re(pattern: str, ci: bool) -> re.Pattern[str]:
    r = _LIKE_CACHE.get((pattern, ci))
    if r is None:
        r = _LIKE_CACHE[(pattern, ci)] = like_to_regex(pattern, ci)
    return r


class RunIndex:
    """The local cache of one store's run summaries, and the searches over it."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self._lock = threading.RLock()
        self._path = _cache_path(store)
        self._db: sqlite3.Connection | None = None
        self._pid = os.getpid()
        #: what the last refresh cost, for benchmarks and tests
        self.last: dict[str, int] = {}
        #: the runs the last refresh could not read (left out of every answer): run id -> why
        self.skipped: dict[str, str] = {}

    # ---- the database ------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._db is not None and self._pid == os.getpid():
            return self._db
        self._pid = os.getpid()
        db = None
        if self._path is not None:
            try:
                os.makedirs(os.path.dirname(self._path), exist_ok=True)
                db = self._open(self._path)
            except (OSError, sqlite3.DatabaseError) as e:
                log.warning("casstore: the search cache %s is unusable (%s); it is rebuilt", self._path, e)
                for suffix in ("", "-wal", "-shm"):
                    try:
                        os.unlink(self._path + suffix)
                    except OSError:
                        pass
                try:
                    db = self._open(self._path)
                except (OSError, sqlite3.DatabaseError):
                    db = None
        if db is None:
            db = self._open(":memory:")
        self._db = db
        return db

    @staticmethod
    def _open(path: str) -> sqlite3.Connection:
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        if path != ":memory:":
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA cache_size=-65536")  # 64 MiB: a large merge inserts into six indexes at once
        db.executescript(_DDL)
        row = db.execute("SELECT v FROM info WHERE k = 'schema'").fetchone()
        if row is None:
            db.execute("INSERT OR REPLACE INTO info VALUES ('schema', ?)", (str(_SCHEMA),))
        elif row[0] != str(_SCHEMA):
            raise sqlite3.DatabaseError(f"schema {row[0]}, not {_SCHEMA}")
        db.execute("PRAGMA quick_check(1)").fetchone()
        db.create_function("cas_like", 3, _like, deterministic=True)
        return db

    def clear(self) -> None:
        """Forget everything cached (the next search rebuilds it from the store)."""
        with self._lock:
            db = self._connect()
            db.executescript("DELETE FROM runs; DELETE FROM params; DELETE FROM tags; DELETE FROM metrics; "
                             "DELETE FROM segments; DELETE FROM claims; DELETE FROM listed; DELETE FROM resumed; "
                             "DELETE FROM listings; DELETE FROM lost;")

    def _put(self, db: sqlite3.Connection, s: Mapping[str, Any], *, sealed: bool, verified: bool,
             deleted: bool) -> None:
        self._put_many(db, [(s, sealed, verified, deleted)])

    @staticmethod
    def _put_many(db: sqlite3.Connection, items: Sequence[tuple[Mapping[str, Any], bool, bool, bool]],
                  cached: Iterable[str] | None = None) -> None:
        """Store summaries ``(summary, sealed, verified, deleted)``, replacing what the cache had
        of their runs, in a few statements. ``cached``: those of their runs the cache has (all
        of them if not said), whose rows go first."""
        replaced = list(cached if cached is not None else (s["run_id"] for s, _, _, _ in items))
        if replaced:
            _drop_values(db, replaced)
        # an upsert keeps a cached run's row number, which its params, tags and metrics are keyed by
        db.executemany(
            f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(run_id) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in _RUN_COLUMNS.split(", ")[1:]),
            [(s["run_id"], s["experiment_id"], s["run_name"], s["status"], s["start_time"], s.get("end_time"),
              s.get("digest"), s["tags"].get(MLFLOW_USER, ""), int(deleted), int(sealed), int(verified),
              _body(s), int(s.get("generation") or 0)) for s, sealed, verified, deleted in items],
        )
        rid = dict(db.execute("SELECT run_id, rid FROM runs WHERE run_id IN (SELECT value FROM json_each(?))",
                              (json.dumps([s["run_id"] for s, _, _, _ in items]),)).fetchall())
        db.executemany("INSERT INTO params VALUES (?,?,?)",
                       [(rid[s["run_id"]], k, v) for s, _, _, _ in items for k, v in s["params"].items()])
        db.executemany("INSERT INTO tags VALUES (?,?,?)",
                       [(rid[s["run_id"]], k, v) for s, _, _, _ in items for k, v in s["tags"].items()])
        db.executemany(
            "INSERT INTO metrics VALUES (?,?,?)",
            [(rid[s["run_id"]], k, None if isinstance(v, float) and math.isnan(v) else v)
             for s, _, _, _ in items for k, v in s["metrics"].items()],
        )

    # ---- the runs of an experiment -------------------------------------------------------

    def experiment_runs(
        self, experiment_id: str, lister: Callable[[str | None], list[tuple[str, float]]],
        entries: Callable[[list[str]], tuple[list[str], dict[str, int]]],
    ) -> tuple[list[str], dict[str, int]]:
        """The runs of an experiment and the generation each resumed one was resumed into, as
        its entries say, listing only the entries named after the point this cache has
        passed (``lister(after)``: the entries ``(key, modification time)`` named after
        ``after``, or all if ``None``; ``entries``: what keys say). For stores of version 6
        and more on a service that stamps its listings (see the module's docstring)."""
        prefix = layout.experiment_runs_prefix(experiment_id)
        with self._lock:
            db = self._connect()
            row = db.execute("SELECT after, mark FROM listings WHERE experiment_id = ?", (experiment_id,)).fetchone()
        began = self.store.backend.server_time()
        t0 = time.monotonic()
        found = lister(None if row is None else str(row[0]))
        elapsed = time.monotonic() - t0
        ids, gens = entries([k for k, _ in found])
        mark = max([m for _, m in found] + ([float(row[1])] if row else []), default=None)
        if mark is None and began is not None:
            # an empty experiment: the listing began at ``began`` on the service's clock (a
            # clock learnt from its replies' Date, which can only be behind), so an entry it
            # missed is named no earlier than that less NOTE_AFTER, as below with elapsed 0
            mark, elapsed = began, 0.0
        with self._lock:
            db = self._connect()
            db.execute("BEGIN")
            db.executemany("INSERT OR IGNORE INTO listed VALUES (?, ?)", [(experiment_id, r) for r in ids])
            db.executemany("INSERT INTO resumed VALUES (?, ?) ON CONFLICT(run_id) DO UPDATE SET "
                           "generation = max(generation, excluded.generation)", list(gens.items()))
            if mark is not None and self.store.backend.server_time() is not None:
                # every entry this listing missed was written after it began, so named at most
                # NOTE_AFTER seconds before then: no earlier than the newest entry seen (stamped by
                # the service before the listing ended) less the listing's time and NOTE_AFTER
                after = layout.time_prefix(mark - elapsed - NOTE_AFTER - 5)
                db.execute("INSERT INTO listings VALUES (?, ?, ?) ON CONFLICT(experiment_id) DO UPDATE SET "
                           "after = max(after, excluded.after), mark = max(mark, excluded.mark)",
                           (experiment_id, after, mark))
            db.execute("COMMIT")
            out = [r for (r,) in db.execute("SELECT run_id FROM listed WHERE experiment_id = ? ORDER BY run_id",
                                            (experiment_id,))]
            resumed = dict(db.execute("SELECT r.run_id, r.generation FROM resumed r JOIN listed l ON l.run_id = r.run_id "
                                      "WHERE l.experiment_id = ?", (experiment_id,)).fetchall())
        return out, resumed

    # ---- bringing the cache up to date ----------------------------------------------------

    def refresh(self, run_ids: Sequence[str], resumed: Mapping[str, int] | None = None) -> None:
        """Make the cache answer for exactly ``run_ids`` (the runs the store lists; ``resumed``:
        the generation each resumed one was resumed into): merge new segments, read the runs
        no sealed summary of their current generation covers, check deletion claims."""
        resumed = resumed or {}
        store = self.store
        stats = {"segments_read": 0, "segments_damaged": 0, "runs_read": 0, "claims_checked": 0}
        with self._lock:
            db = self._connect()
            if store.batched:
                self._merge_segments(db, stats)
            known = {r[0]: (int(r[1] and r[3] >= resumed.get(r[0], 0)), r[2])
                     for r in db.execute("SELECT run_id, sealed, deleted, generation FROM runs")}
            claims = {r[0] for r in db.execute("SELECT run_id FROM claims")}
            to_read = [r for r in run_ids if not known.get(r, (0, 0))[0]]
            # a sealed run changes only by deletion: a version-4 store publishes each deletion
            # (before its marker); an older store's markers are asked for every run not known deleted
            if store.batched:
                ask = [r for r in claims if r in known and known[r][0] and not known[r][1]]
            else:
                ask = [r for r in run_ids if r in known and known[r][0] and not known[r][1]]
            if ask:
                stats["claims_checked"] = len(ask)
                found = store.backend.exists_many([layout.deleted_key(r) for r in ask])
                db.execute("BEGIN")
                for r, gone in zip(ask, found):
                    if gone:
                        db.execute("UPDATE runs SET deleted = 1 WHERE run_id = ?", (r,))
                        db.execute("DELETE FROM claims WHERE run_id = ?", (r,))
                db.execute("COMMIT")
            self.skipped = {}
            if to_read:
                stats["runs_read"] = len(to_read)
                lost = dict(db.execute("SELECT run_id, why FROM lost").fetchall())
                views = self._read_runs(to_read, lost)
                db.execute("BEGIN")
                for v in views:
                    if v is not None:
                        self._put(db, summary_of(v, resumed.get(v.run_id, 0)), sealed=v.sealed, verified=v.sealed,
                                  deleted=v.deleted)
                        if v.deleted:
                            db.execute("DELETE FROM claims WHERE run_id = ?", (v.run_id,))
                        if v.run_id in lost:  # restored
                            db.execute("DELETE FROM lost WHERE run_id = ?", (v.run_id,))
                db.execute("COMMIT")
            self.last = stats

    def _skip(self, run_id: str, why: str) -> None:
        """Leave a run that cannot be read out of every answer, and say so (a warning naming it)."""
        self.skipped[run_id] = why
        warnings.warn(DamagedRunWarning(
            f"run {run_id} is skipped: it cannot be read ({why}). Restore its damaged records from a backup "
            "(`casstore verify --all` lists them)"), stacklevel=3)

    def _read_runs(self, run_ids: Sequence[str], lost: Mapping[str, str]) -> list[RunView | None]:
        """The runs as read (``None`` for one that cannot be); ``lost``: the runs this cache
        once held sealed that have nothing left to read, and why."""
        def one(rid: str) -> RunView | None:
            try:
                return self.store.get_run(rid)
            except ObjectNotFoundError:
                if rid in lost:
                    self._skip(rid, lost[rid])
                return None  # an index entry whose run meta never reached the disk
            except CasstoreError as e:
                self._skip(rid, str(e))
                return None

        workers = self.store.backend.concurrency
        if workers <= 1 or len(run_ids) <= 1:
            return [one(r) for r in run_ids]
        with ThreadPoolExecutor(min(workers, len(run_ids)), thread_name_prefix="casstore-index") as pool:
            return list(pool.map(one, run_ids))

    def _merge_segments(self, db: sqlite3.Connection, stats: dict[str, int]) -> None:
        listed = sorted(k for k in self.store.backend.list(INDEX_PREFIX) if _level(k) is not None)
        seen = {r[0] for r in db.execute("SELECT name FROM segments")}
        new = [k for k in listed if k not in seen]
        if not new:
            return
        datas = _get_many(self.store, new)
        db.execute("BEGIN")
        try:
            for key, data in zip(new, datas):
                if data is None:
                    continue  # merged into another by a writer meanwhile: listed next time
                stats["segments_read"] += 1
                try:
                    summaries = decode_segment(data, key)
                except CorruptRecordError as e:
                    stats["segments_damaged"] += 1
                    log.warning("casstore: %s; it is left out and its runs are read from the store", e)
                    continue
                rows = {r[0]: r[1:] for r in db.execute(
                    "SELECT run_id, sealed, deleted, generation FROM runs WHERE run_id IN (SELECT value FROM json_each(?))",
                    (json.dumps([x["run_id"] for x in summaries]),))}
                fresh: dict[str, dict[str, Any]] = {}
                for x in summaries:
                    row = rows.get(x["run_id"])
                    newer = row is None or not row[0] or int(x.get("generation") or 0) > row[2]
                    had = fresh.get(x["run_id"])
                    if "digest" in x and newer and (had is None or int(x.get("generation") or 0) >= int(had.get("generation") or 0)):
                        fresh[x["run_id"]] = x  # the latest generation of a run's summaries in the segment
                    if x.get("deleted") and not (row is not None and row[1]):
                        db.execute("INSERT OR IGNORE INTO claims VALUES (?)", (x["run_id"],))
                self._put_many(db, [(x, True, False, False) for x in fresh.values()],
                               cached=[r for r in fresh if r in rows])
                db.execute("INSERT OR IGNORE INTO segments VALUES (?)", (key,))
            db.execute("DELETE FROM segments WHERE name NOT IN (SELECT value FROM json_each(?))", (json.dumps(listed),))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # ---- searching ---------------------------------------------------------------------------

    def search(
        self, run_ids: Sequence[str], comparisons: Sequence[Comparison], order: Sequence[OrderKey],
        deleted: bool | None, limit: int | None, offset: int, deleted_experiments: Sequence[str] = (),
    ) -> tuple[list[RunView], bool]:
        """The runs among ``run_ids`` that match, ordered; and whether more follow. A run of one
        of ``deleted_experiments`` counts as deleted (as MLflow marks them)."""
        with self._lock:
            db = self._connect()
            while True:
                rows = self._query(db, run_ids, comparisons, order, deleted, limit, offset, deleted_experiments)
                more = limit is not None and len(rows) > limit
                rows = rows[:limit] if limit is not None else rows
                if self._verify(db, [r for r in rows if not r[1]]):
                    break  # a summary that failed its check was replaced from the run: ask again
            return [self._view(body, bool(d)) for body, _, d in rows], more

    def experiments_of(self, run_ids: Sequence[str]) -> list[str]:
        """The experiments the runs among ``run_ids`` belong to."""
        with self._lock:
            db = self._connect()
            rows = db.execute("SELECT DISTINCT experiment_id FROM runs WHERE run_id IN (SELECT value FROM json_each(?))",
                              (json.dumps(list(run_ids)),))
            return sorted(str(e) for (e,) in rows)

    def count(self, run_ids: Sequence[str], comparisons: Sequence[Comparison], deleted: bool | None,
              deleted_experiments: Sequence[str] = ()) -> int:
        """How many runs among ``run_ids`` match (what :meth:`search` would return in all)."""
        with self._lock:
            db = self._connect()
            where, args = self._where(run_ids, comparisons, deleted, deleted_experiments)
            row = db.execute(f"SELECT count(*) FROM runs r WHERE {where}", args).fetchone()
            return int(row[0])

    def keys(self, run_ids: Sequence[str], deleted: bool | None,
             deleted_experiments: Sequence[str] = ()) -> tuple[list[str], list[str]]:
        """The param keys and the metric keys the runs among ``run_ids`` hold, sorted."""
        with self._lock:
            db = self._connect()
            where, args = self._where(run_ids, (), deleted, deleted_experiments)
            # each key the cache holds (walked on the (key, value) index, one step a key), kept if
            # one of these runs has it: a few index lookups a key, not a scan of every value
            def of(table: str) -> list[str]:
                return [k for (k,) in db.execute(
                    f"WITH RECURSIVE k(key) AS (SELECT min(key) FROM {table} UNION ALL "
                    f"SELECT (SELECT min(key) FROM {table} WHERE key > k.key) FROM k WHERE k.key IS NOT NULL) "
                    f"SELECT key FROM k WHERE key IS NOT NULL AND EXISTS (SELECT 1 FROM {table} v JOIN runs r "
                    f"ON r.rid = v.rid WHERE v.key = k.key AND {where})", args)]

            return of("params"), of("metrics")

    def _verify(self, db: sqlite3.Connection, rows: list[tuple[bytes, int, int]]) -> bool:
        """Check summaries taken from segments against their runs' seals; replace any that
        do not match with the run as read. Return whether all matched."""
        if not rows:
            return True
        summaries = [unpack(body, "index summary") for body, _, _ in rows]

        def digest_of(s: dict[str, Any]) -> str | None:
            # the seal of the summary's generation (a later one is known from the listing of runs)
            try:
                seal = self.store._seal_at(s["run_id"], int(s.get("generation") or 0))
            except CorruptRecordError:
                return None  # a damaged seal: the run is read below, which shows what verifies or names it
            return None if seal is None else str(seal["digest"])

        workers = max(1, min(self.store.backend.concurrency, len(summaries)))
        with ThreadPoolExecutor(workers, thread_name_prefix="casstore-index") as pool:
            digests = list(pool.map(digest_of, summaries))
        read: list[tuple[dict[str, Any], RunView | None, str | None]] = []
        for s, digest in zip(summaries, digests):
            if digest == s["digest"]:
                read.append((s, None, None))
                continue
            log.warning("casstore: the index's summary of run %s does not match the run; it is read again", s["run_id"])
            generation = int(s.get("generation") or 0)
            try:
                read.append((s, self.store.get_run(s["run_id"]), None))
            except ObjectNotFoundError:  # nothing of the run is left to read, yet it was sealed
                read.append((s, None, f"the search index holds it sealed (digest {s['digest']}), but its seal "
                                      f"{layout.seal_key(s['run_id'], generation)} is missing"))
            except CasstoreError as e:
                read.append((s, None, str(e)))
        db.execute("BEGIN")
        for s, v, why in read:
            rid = s["run_id"]
            if v is None and why is None:
                db.execute("UPDATE runs SET verified = 1 WHERE run_id = ?", (rid,))
            elif v is not None:
                self._put(db, summary_of(v, int(s.get("generation") or 0)), sealed=v.sealed, verified=v.sealed,
                          deleted=v.deleted)
            else:
                self._skip(rid, str(why))
                _drop_values(db, [rid])
                db.execute("DELETE FROM runs WHERE run_id = ?", (rid,))
                db.execute("INSERT OR REPLACE INTO lost VALUES (?, ?)", (rid, why))
        db.execute("COMMIT")
        return all(v is None and why is None for _, v, why in read)

    @staticmethod
    def _view(body: bytes, deleted: bool) -> RunView:
        s = unpack(body, "index summary")
        return RunView(
            run_id=s["run_id"], run_name=s["run_name"], experiment_id=s["experiment_id"], status=s["status"],
            start_time=s["start_time"], end_time=s.get("end_time"), digest=s.get("digest"),
            sealed=s.get("digest") is not None, deleted=deleted, params=s["params"], tags=s["tags"],
            metrics=s["metrics"], artifacts={},
            models={n: ModelRef(n, d) for n, d in (s.get("models") or {}).items()},
            counts=(int(s["artifacts"][0]), int(s["artifacts"][1])) if s.get("artifacts") else (0, 0),
        )

    def _query(
        self, db: sqlite3.Connection, run_ids: Sequence[str], comparisons: Sequence[Comparison],
        order: Sequence[OrderKey], deleted: bool | None, limit: int | None, offset: int,
        deleted_experiments: Sequence[str] = (),
    ) -> list[tuple[bytes, int, int]]:
        is_deleted, d_args = _deleted_sql(deleted_experiments)
        where, where_args = self._where(run_ids, comparisons, deleted, deleted_experiments)
        args = d_args + where_args
        order_sql: list[str] = []
        for k in order:
            expr, a = _order_expr(k)
            order_sql.append(f"({expr}) IS NULL, ({expr}) {'ASC' if k.ascending else 'DESC'}")
            args.extend(a + a)
        order_sql += ["r.start_time DESC", "r.run_id ASC"]
        sql = (f"SELECT r.body, r.verified, {is_deleted} FROM runs r WHERE {where} "
               f"ORDER BY {', '.join(order_sql)}")
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            args += [limit + 1, offset]
        elif offset:
            sql += " LIMIT -1 OFFSET ?"
            args.append(offset)
        return [(bytes(b), int(v), int(d)) for b, v, d in db.execute(sql, args)]

    @staticmethod
    def _where(run_ids: Sequence[str], comparisons: Sequence[Comparison], deleted: bool | None,
               deleted_experiments: Sequence[str] = ()) -> tuple[str, list[Any]]:
        """The WHERE clause (and its arguments) choosing the runs among ``run_ids`` that match."""
        where = ["r.run_id IN (SELECT value FROM json_each(?))"]  # one argument, however many runs
        args: list[Any] = [json.dumps(list(run_ids))]
        if deleted is not None:
            is_deleted, d_args = _deleted_sql(deleted_experiments)
            where.append(f"{is_deleted} = ?")
            args += [*d_args, int(deleted)]
        for c in comparisons:
            sql, a = _condition(c)
            where.append(sql)
            args.extend(a)
        return " AND ".join(where), args


def _deleted_sql(deleted_experiments: Sequence[str]) -> tuple[str, list[Any]]:
    """SQL that is 1 for a deleted run, or a run of one of ``deleted_experiments``, else 0."""
    if not deleted_experiments:
        return "r.deleted", []
    return ("(r.deleted = 1 OR r.experiment_id IN (SELECT value FROM json_each(?)))",
            [json.dumps(list(deleted_experiments))])


def _attr_expr(key: str) -> str:
    if key == "artifact_uri":
        return "'runs:/' || r.run_id"
    if key == "duration":
        return "(r.end_time - r.start_time)"
    return f"r.{key}"


def _condition(c: Comparison) -> tuple[str, list[Any]]:
    """SQL for one comparison, with the semantics of :func:`casstore.runs.search.matches`."""
    if c.op in NULL_OPS:  # params and tags alone take them
        held = f"r.rid IN (SELECT v.rid FROM {c.entity} v WHERE v.key = ?)"
        return (held if c.op == "IS NOT NULL" else f"NOT {held}"), [c.key]
    if c.entity in ("params", "tags", "metrics"):
        col, a = _value_cond("v.value", c)
        # the runs whose value matches, through the (key, value) index: the cheapest filter drives the query
        return (f"r.rid IN (SELECT v.rid FROM {c.entity} v WHERE v.key = ? AND {col})", [c.key, *a])
    expr = _attr_expr(c.key)
    if RUN_ATTRIBUTES[c.key] == "num":
        return _value_cond(expr, c)
    return _value_cond(expr, c)


def _value_cond(expr: str, c: Comparison) -> tuple[str, list[Any]]:
    numeric = c.entity == "metrics" or (c.entity == "attributes" and RUN_ATTRIBUTES[c.key] == "num")
    if numeric:
        assert isinstance(c.value, float)
        # a NaN metric is stored as NULL: it is unequal to every number, and nothing else
        nan = f" OR ({expr} IS NULL AND {int(c.entity == 'metrics')})" if c.op == "!=" else ""
        return f"({expr} IS NOT NULL AND {expr} {c.op} ?{nan})", [c.value]
    if c.op in ("IN", "NOT IN"):
        assert isinstance(c.value, tuple)
        marks = ",".join("?" * len(c.value))
        return f"({expr} IS NOT NULL AND {expr} {c.op} ({marks}))", list(c.value)
    if c.op in ("LIKE", "ILIKE"):
        return f"cas_like(?, {expr}, ?)", [c.value, int(c.op == "ILIKE")]
    return f"({expr} IS NOT NULL AND {expr} {c.op} ?)", [c.value]


def _order_expr(k: OrderKey) -> tuple[str, list[Any]]:
    if k.entity in ("params", "tags", "metrics"):
        return f"SELECT v.value FROM {k.entity} v WHERE v.rid = r.rid AND v.key = ?", [k.key]
    return _attr_expr(k.key), []


# ---- page tokens ---------------------------------------------------------------------------------


def page_token(query: str, offset: int) -> str:
    raw = json.dumps({"q": blake3(query.encode()).hexdigest()[:16], "o": offset}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def token_offset(query: str, token: str | None) -> int:
    if not token:
        return 0
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if raw["q"] == blake3(query.encode()).hexdigest()[:16] and isinstance(raw["o"], int) and raw["o"] >= 0:
            return int(raw["o"])
    except (ValueError, KeyError, TypeError):
        pass
    raise InvalidInputError(
        f"page_token {token[:40]!r} is not a token of this search (same experiments, filter and order); "
        "pass the token the previous page returned, with the same arguments"
    )


Getter = Callable[[str], Any]
