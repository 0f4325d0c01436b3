"""A run's params, tags and metrics as numbered batch records (store format version 4).

One logging call (``log_params``, ``set_tags``, ``log_batch``, a metrics flush, the end of
a run, the replay of a dead writer's metric log) writes one record, ``runs/<run_id>/batch-<n>``
(10 digits: beside the run's other records, not in a directory of their own, which would
cost a directory per run on a local disk), numbered gap-free as registry
versions are: a writer lists the batches, creates ``n = max + 1`` with create-if-absent,
and on losing the race lists again. Because every number is created only once the one
below it exists (a writer saw it in its listing; a fence, below, found it taken), a writer
that wins ``n`` has seen every batch below ``n`` in the listing it numbered from; it checks its params against them before writing, so a
param bound twice with different values is refused with exactly one winner (the lowest
batch binding it), and readers ignore a binding that an earlier batch made differently.

A batch may *fence* the run: ``close`` (the run's end, with its status and end time) or
``deleted``. Nothing numbered after a fence counts, and a writer that finds one refuses to
write; so a write that wins its number before the close is in the seal, with no check
after the write. A fence checks nothing against the batches below it, so it takes the
first free number after those listed by trying the next one each time one is taken, with
no listing between: it catches up with writers appending back to back, who need a listing
per number. A batch carrying points from a writer's metric write-ahead log names the
range of the log it carries (``"wal": [writer, first, last]``), as a metrics segment does.

The records that bind artifacts and models (``artifacts/<k>``, ``models/<k>``) are created
outside the sequence (each once, by create-if-absent), so a batch written after them
*lists* them (``"refs"``: record key under the run -> the digest it binds), and the writer
then creates the witness record ``runs/<run_id>/last-<n>`` of that batch (and removes the
witness it wrote before, which the new one outnumbers). A record removed from an open run
is thus always missed by someone: a listed record by its batch, a batch below the last by
the gap, the last batch by its witness (garbage collection proves all three before it
deletes anything). See docs/design.md ("Runs, version 4") for the
argument in full.

In a run whose meta says ``"bindings": "batch"`` (runs created in a store of the packs
layout) a logging call's artifact bindings are in its batch record too (``"artifacts":
[[path, digest, size, kind, logged_at, data], ...]``, ``data`` the content of an inline
artifact, else nil): a log of 10,000 small files is one record, not 10,000. As for params,
the lowest batch binding a path wins, and a binding that makes a path both a file and a
directory of an earlier one does not count; writers check before they write. A batch that
binds artifacts is witnessed as one that lists records is, so removing it is found too.

>>> b = Batch(1, params={"lr": "0.1"}, tags=[("team", "a")], points=[("loss", 0.5, 0, 7)])
>>> decode_batch(b.to_bytes(), "runs/x/batch-0000000001", 1) == b
True
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from blake3 import blake3

from casstore.exceptions import CorruptRecordError
from casstore.objects.codec import pack_checked, unpack_checked
from casstore.objects.digest import is_digest
from casstore.runs.records import INLINE, MetricPoint, checked_path, field_of

__all__ = [
    "BATCH_BINDINGS",
    "BATCHED_FROM",
    "COMPACTED_FROM",
    "ORDERED_FROM",
    "Batch",
    "BatchArtifact",
    "Folded",
    "batches_prefix",
    "batch_key",
    "witness_key",
    "witness_prefix",
    "witness_record",
    "batch_number",
    "decode_batch",
    "fold",
]

#: the store format version from which runs write batch records
BATCHED_FROM = 4
#: a run meta's ``bindings`` when its artifact bindings are in its batch records
BATCH_BINDINGS = "batch"
#: the store format version from which a sealed run's seal is all it keeps (see :mod:`casstore.runs.compact`)
COMPACTED_FROM = 5
#: the store format version from which every writer names run entries in time order and notes
#: a late one, so a search may list only an experiment's newest entries (see :mod:`casstore.runs.index`)
ORDERED_FROM = 6
_DIGITS = 10


def batches_prefix(run_id: str) -> str:
    return f"runs/{run_id}/batch-"


def batch_key(run_id: str, n: int) -> str:
    return f"runs/{run_id}/batch-{n:0{_DIGITS}d}"


def witness_prefix(run_id: str) -> str:
    return f"runs/{run_id}/last-"


def witness_key(run_id: str, n: int) -> str:
    """The record that witnesses batch ``n``, a batch that lists bound records (``refs``)."""
    return f"runs/{run_id}/last-{n:0{_DIGITS}d}"


def witness_record(n: int) -> bytes:
    return pack_checked({"v": 1, "n": n})


def batch_number(key: str, kind: str = "batch-") -> int | None:
    """The number of a batch key (or of a witness key, ``kind="last-"``), ``None`` for anything
    else under the prefix."""
    last = key.rsplit("/", 1)[-1].removeprefix(kind)
    if len(last) != _DIGITS or not last.isdigit():
        return None
    return int(last)


#: an artifact bound in a batch: ``(path, digest, size, kind, logged_at, data)``; ``data`` is
#: the content of an inline artifact (checked against ``digest`` when read), else None
BatchArtifact = tuple[str, str, int, str, int, bytes | None]


@dataclass(frozen=True)
class Batch:
    """One batch record: params to bind, tags to set (in order), metric points, and
    possibly a fence (``close``: ``{status, end_time}``; ``deleted``: ``{time, reason}``)."""

    n: int
    params: dict[str, str] = field(default_factory=dict)
    #: tags set, in order; a value ``None`` deletes the tag
    tags: list[tuple[str, str | None]] = field(default_factory=list)
    points: list[MetricPoint] = field(default_factory=list)
    close: dict[str, Any] | None = None
    deleted: dict[str, Any] | None = None
    time: int = 0
    #: the generation written for: 0, or the number of times the run was resumed after ending
    g: int = 0
    #: the write-ahead log range the points carry, ``(writer, first, last)`` (casstore/runs/wal.py)
    wal: tuple[str, int, int] | None = None
    #: records bound before this batch that it lists: key under ``runs/<run_id>/`` -> digest
    refs: dict[str, str] = field(default_factory=dict)
    artifacts: list[BatchArtifact] = field(default_factory=list)
    #: the BLAKE3 (first 16 hex) of the stored bytes: how a seal names the batches it folded
    sum: str = field(default="", compare=False)

    @property
    def fence(self) -> bool:
        return self.close is not None or self.deleted is not None

    def to_bytes(self) -> bytes:
        rec: dict[str, Any] = {
            "v": 1, "n": self.n, "time": self.time, "params": self.params,
            "tags": [list(t) for t in self.tags], "metrics": [list(p) for p in self.points], "g": self.g,
        }
        if self.close is not None:
            rec["close"] = self.close
        if self.deleted is not None:
            rec["deleted"] = self.deleted
        if self.wal is not None:
            rec["wal"] = list(self.wal)
        if self.refs:
            rec["refs"] = self.refs
        if self.artifacts:
            rec["artifacts"] = [list(a) for a in self.artifacts]
        return pack_checked(rec)

    def stored(self) -> tuple[Batch, bytes]:
        """The bytes to store, and this batch with their :attr:`sum`."""
        data = self.to_bytes()
        return replace(self, sum=stored_sum(data)), data


def stored_sum(data: bytes) -> str:
    """What a seal names a batch by: the first 16 hex of the BLAKE3 of its stored bytes."""
    return blake3(data).hexdigest()[:16]


def decode_batch(data: bytes, where: str, n: int) -> Batch:
    """Decode and check a batch record found under number ``n``."""
    rec = unpack_checked(data, f"record {where}", required=True)
    if not isinstance(rec, dict) or not isinstance(rec.get("v"), int) or rec["v"] < 1:
        raise CorruptRecordError(f"record {where} is not a batch record; the store may be corrupt")
    if field_of(rec, "n", "int", where) != n:
        raise CorruptRecordError(f"record {where} says it is batch {rec['n']}, not {n}")
    params = field_of(rec, "params", "dict", where)
    tags = field_of(rec, "tags", "list", where)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in params.items()):
        raise CorruptRecordError(f"{where}: a param is not a string pair")
    if not all(isinstance(t, list) and len(t) == 2 and isinstance(t[0], str) and (t[1] is None or isinstance(t[1], str))
               for t in tags):
        raise CorruptRecordError(f"{where}: a tag is not a string pair")
    points: list[MetricPoint] = []
    for p in field_of(rec, "metrics", "list", where):
        if (not isinstance(p, list) or len(p) != 4 or not isinstance(p[0], str) or isinstance(p[1], bool)
                or not isinstance(p[1], (int, float)) or not isinstance(p[2], int) or not isinstance(p[3], int)):
            raise CorruptRecordError(f"{where}: malformed metric point {p!r}")
        points.append((p[0], float(p[1]), p[2], p[3]))
    close = field_of(rec, "close", "dict", where, optional=True)
    if close is not None:
        field_of(close, "status", "str", where)
        field_of(close, "end_time", "int", where)
    deleted = field_of(rec, "deleted", "dict", where, optional=True)
    logged = rec.get("wal")
    if logged is not None and not (
            isinstance(logged, list) and len(logged) == 3 and isinstance(logged[0], str)
            and all(isinstance(i, int) and not isinstance(i, bool) for i in logged[1:])):
        raise CorruptRecordError(f"{where}: malformed write-ahead log range {logged!r}")
    refs = field_of(rec, "refs", "dict", where, optional=True) or {}
    if not all(isinstance(k, str) and k.count("/") == 1 and isinstance(v, str) for k, v in refs.items()):
        raise CorruptRecordError(f"{where}: malformed list of bound records")
    artifacts: list[BatchArtifact] = []
    for a in field_of(rec, "artifacts", "list", where, optional=True) or []:
        if not (isinstance(a, list) and len(a) == 6 and isinstance(a[0], str) and is_digest(a[1])
                and isinstance(a[2], int) and not isinstance(a[2], bool) and a[2] >= 0 and a[3] in ("file", INLINE)
                and isinstance(a[4], int) and (a[5] is None if a[3] == "file" else isinstance(a[5], bytes))):
            raise CorruptRecordError(f"{where}: malformed artifact binding {a[:5] if isinstance(a, list) else a!r}")
        artifacts.append((checked_path(a[0], where), a[1], a[2], a[3], a[4], a[5]))
    return Batch(n, dict(params), [(k, v) for k, v in tags], points, close, deleted,
                 field_of(rec, "time", "int", where, optional=True) or 0, field_of(rec, "g", "int", where, optional=True) or 0,
                 None if logged is None else (logged[0], logged[1], logged[2]), dict(refs), artifacts, stored_sum(data))


@dataclass
class Folded:
    """What a run's batches say, in number order: the params (the first binding of each
    key), the tags (the last value; ``None``: deleted), the metric points, the closing batch
    of each generation, the deleting batch. A batch written for a generation that a batch
    numbered before it had closed does not count, nor does anything after the deleting one."""

    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str | None] = field(default_factory=dict)
    points: list[MetricPoint] = field(default_factory=list)
    closes: dict[int, Batch] = field(default_factory=dict)
    deleted: Batch | None = None
    top: int = 0
    #: path -> the binding that counts and the number of the batch holding it
    artifacts: dict[str, tuple[BatchArtifact, int]] = field(default_factory=dict)
    #: every directory the counted artifact paths make
    dirs: set[str] = field(default_factory=set)

    @property
    def closed_through(self) -> int:
        """The latest generation closed (-1: none)."""
        return max(self.closes, default=-1)

    def refuses(self, generation: int) -> bool:
        """Whether a batch for ``generation`` numbered after these would not count."""
        return self.deleted is not None or self.closed_through >= generation


def fold(batches: Mapping[int, Batch] | Iterable[Batch], upto: int | None = None, since: int = 0,
         into: Folded | None = None) -> Folded:
    """Fold batches (numbered at most ``upto``) in number order. ``since``: the generation
    folded for; batches of earlier generations do not count (what counts of them is in the
    seal of the generation before, which the fold goes on from). With ``into``, fold batches
    numbered after those ``into`` holds into it (the same as folding them all again)."""
    items = sorted(batches.values() if isinstance(batches, Mapping) else batches, key=lambda b: b.n)
    out = into if into is not None else Folded()
    out.top = max(out.top, items[-1].n if items else 0)
    for b in items:
        if (upto is not None and b.n > upto) or out.deleted is not None:
            break
        if b.g < since or b.g <= out.closed_through:
            continue  # written for a generation already ended
        for k, v in b.params.items():
            out.params.setdefault(k, v)
        for k, t in b.tags:
            out.tags[k] = t
        out.points.extend(b.points)
        for a in b.artifacts:
            if path_conflict(a[0], out.artifacts, out.dirs) is None:
                out.artifacts[a[0]] = (a, b.n)
                out.dirs.update(parents(a[0]))
        if b.close is not None:
            out.closes[b.g] = b
        if b.deleted is not None:
            out.deleted = b
    return out


def parents(path: str) -> list[str]:
    """The directories ``path`` makes: ``a/b/c`` -> ``a``, ``a/b``."""
    out = []
    i = path.find("/")
    while i != -1:
        out.append(path[:i])
        i = path.find("/", i + 1)
    return out


def path_conflict(path: str, files: Mapping[str, object], dirs: set[str]) -> str | None:
    """The bound path ``path`` clashes with, if binding it would make a bound file a directory
    or a directory a file; None if it does not (bound to the same path is no clash)."""
    if path in dirs:
        return path
    return next((d for d in parents(path) if d in files), None)
