"""What this machine knows of the local files it has hashed: an unchanged file is not read again.

Storing a large file the store has already costs one BLAKE3 pass over it (about 0.2 s a
GiB on two cores). git's index, DVC's state database and restic's parent snapshot avoid
even that the same way: a file whose device, inode, size, modification time and change
time are what they were when it was hashed holds what it held then. This module keeps
that record, one row per file, in a SQLite database on the local disk, shared by every
process of the user (WAL mode; a busy or broken database is a miss, never an error).

What it trusts, and what protects the trust:

- A write to a file changes its change time (``st_ctime``), which no program can set
  back. A row is taken only if all five values match.
- A file is recorded only once it was hashed in full from its own bytes, was not written
  to while it was hashed (its status before and after match), and had not been written to
  for :data:`SETTLE_NS` before hashing began. File times come from a coarse clock (a tick
  of a few milliseconds): a write in the same tick as an earlier one can leave the times
  as they were, and the settling time keeps such a file from being recorded while it may
  still be written in the tick it was hashed in.
- A digest from this record only ever answers "the store has this content already":
  :class:`~casstore.objects.store.ObjectStore` takes it after checking that the store
  holds that file whole (recipe and chunk lengths), and never names a new object by it.
  A file the store lacks is hashed as if there were no record.

What it does not protect against: a clock set back by more than the settling time, a
file system that does not update change times (some network file systems), and a program
that changes a file and restores its times through the raw device. Turn it off with
``CASSTORE_STAT_CACHE=0``, as an audit that must read every byte would.

Only files of at least :data:`MIN_SIZE` are recorded: a smaller one is hashed faster
than it is looked up. Rows not used for :data:`KEEP_DAYS` are dropped.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import weakref

from casstore._env import env_on

__all__ = ["StatCache", "MIN_SIZE", "SETTLE_NS", "default_stat_cache", "cache_dir"]

log = logging.getLogger(__name__)

#: files smaller than this are hashed every time
MIN_SIZE = 8 << 20
#: a file written to less than this long before it was hashed is not recorded
SETTLE_NS = 2_000_000_000
#: rows not used for this long are dropped when the cache is opened
KEEP_DAYS = 60
_DAY_NS = 86_400 * 1_000_000_000

SWITCH_ENV = "CASSTORE_STAT_CACHE"
DIR_ENV = "CASSTORE_CACHE_DIR"
FILE_NAME = "stat-cache-v1.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS hashed (
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    digest TEXT NOT NULL,
    used_ns INTEGER NOT NULL,
    PRIMARY KEY (dev, ino)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS hashed_used ON hashed (used_ns);
"""


def cache_dir() -> str:
    """Where casstore keeps what it caches on this machine: ``CASSTORE_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/casstore``, else ``~/.cache/casstore``."""
    given = os.environ.get(DIR_ENV, "").strip()
    if given:
        return os.path.abspath(os.path.expanduser(given))
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "casstore")


def _key(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


class StatCache:
    """The record of hashed files in the SQLite database at ``path`` (created on first use)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._broken = False
        _caches.add(self)

    def __repr__(self) -> str:
        return f"StatCache({self.path!r})"

    def _connect(self) -> sqlite3.Connection | None:
        """The connection of this process (a child after ``fork`` opens its own); None once
        the database proved unusable, which was logged."""
        if self._broken:
            return None
        if self._db is not None:
            return self._db
        db = None
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            db = sqlite3.connect(self.path, timeout=0.5, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            cutoff = time.time_ns() - KEEP_DAYS * _DAY_NS
            db.execute("DELETE FROM hashed WHERE used_ns < ?", (cutoff,))
        except (sqlite3.Error, OSError) as e:
            if db is not None:
                db.close()
            if isinstance(e, sqlite3.OperationalError) and ("locked" in str(e) or "busy" in str(e)):
                return None  # other processes are opening it too: a miss now, a new try next time
            self._broken = True
            log.warning("casstore: the stat cache %s cannot be used (%s); every file is hashed", self.path, e)
            return None
        self._db = db
        return db

    def lookup(self, st: os.stat_result) -> str | None:
        """The digest recorded for the file of status ``st``, if it is unchanged since; else
        None. A row that serves is marked used (at most once a day)."""
        if st.st_size < MIN_SIZE:
            return None
        with self._lock:
            db = self._connect()
            if db is None:
                return None
            try:
                row = db.execute(
                    "SELECT digest, used_ns FROM hashed WHERE dev=? AND ino=? AND size=? AND mtime_ns=? AND ctime_ns=?",
                    _key(st),
                ).fetchone()
                now = time.time_ns()
                if row and row[1] < now - _DAY_NS:
                    db.execute("UPDATE hashed SET used_ns=? WHERE dev=? AND ino=?", (now, st.st_dev, st.st_ino))
            except sqlite3.Error:
                return None  # busy or damaged: hash the file
        return str(row[0]) if row else None

    def record(self, st: os.stat_result, digest: str, started_ns: int) -> bool:
        """Record that the file of status ``st`` (before and after it was hashed) holds
        ``digest``, hashed in full from its bytes in a pass that began at ``started_ns``
        (``time.time_ns()``). A file written to within :data:`SETTLE_NS` before that is not
        recorded. Returns whether it was."""
        if st.st_size < MIN_SIZE or max(st.st_mtime_ns, st.st_ctime_ns) > started_ns - SETTLE_NS:
            return False
        with self._lock:
            db = self._connect()
            if db is None:
                return False
            try:
                db.execute("INSERT OR REPLACE INTO hashed VALUES (?, ?, ?, ?, ?, ?, ?)", (*_key(st), digest, time.time_ns()))
            except sqlite3.Error:
                return False
        return True

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
            self._db = None


_shared: dict[str, StatCache] = {}
_shared_lock = threading.Lock()
_caches: weakref.WeakSet[StatCache] = weakref.WeakSet()
_inherited: list[sqlite3.Connection] = []  # a parent's connections, never used or closed in the child


def _after_fork_in_child() -> None:
    """A child starts with locks no thread of its own holds and opens its own connections
    (SQLite forbids using a parent's; closing one could disturb the parent's)."""
    global _shared_lock
    _shared_lock = threading.Lock()
    for cache in list(_caches):
        cache._lock = threading.Lock()
        if cache._db is not None:
            _inherited.append(cache._db)
            cache._db = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def default_stat_cache() -> StatCache | None:
    """This user's stat cache (one object per database in a process), or None when
    ``CASSTORE_STAT_CACHE`` turns it off."""
    if not env_on(SWITCH_ENV):
        return None
    path = os.path.join(cache_dir(), FILE_NAME)
    with _shared_lock:
        cache = _shared.get(path)
        if cache is None:
            cache = _shared[path] = StatCache(path)
        return cache
