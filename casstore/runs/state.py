"""A run's content, read from its live records or from its sealed manifest.

Both sources decode into one :class:`RunState`, so a run looks the same before and
after it is sealed. The manifest is the canonical msgpack of the state plus the
status and end time; its BLAKE3 is the run digest.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from casstore.backend import Backend
from casstore.exceptions import CorruptRecordError, ObjectNotFoundError
from casstore.objects.digest import is_digest
from casstore.runs.batches import Batch, batch_number, decode_batch, fold
from casstore.runs.layout import RECORD_VERSION, name_key, run_prefix
from casstore.runs.wal import Covered, WalDir
from casstore.runs.records import ArtifactEntry, DamagedRecord, MetricPoint, ModelRef, checked_path, decode_record, field_of
from casstore.utils.mlflow_tags import MLFLOW_RUN_NAME

__all__ = ["BatchVanished", "RunState", "read_live_state", "state_from_manifest", "manifest_of"]


@dataclass
class RunState:
    """Everything recorded for a run."""

    run_id: str
    meta: dict[str, Any]
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    points: list[MetricPoint] = field(default_factory=list)
    artifacts: dict[str, ArtifactEntry] = field(default_factory=dict)
    models: dict[str, ModelRef] = field(default_factory=dict)
    #: records that failed their checks, left out of the state
    damaged: list[DamagedRecord] = field(default_factory=list)
    #: the write-ahead log numbers the metric segments read carry, per log
    covered: Covered = field(default_factory=dict)
    #: datasets the run used (``log_input``): records with name, digest, source, context, ...
    inputs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def experiment_id(self) -> str:
        return str(self.meta["experiment_id"])

    @property
    def start_time(self) -> int:
        return int(self.meta["start_time"])

    @property
    def run_name(self) -> str:
        return self.tags.get(MLFLOW_RUN_NAME) or str(self.meta.get("run_name") or "")


def check_meta(meta: dict[str, Any], where: str) -> dict[str, Any]:
    field_of(meta, "run_id", "str", where)
    field_of(meta, "experiment_id", "str", where)
    field_of(meta, "start_time", "int", where)
    field_of(meta, "run_name", "str", where, optional=True)
    tags = field_of(meta, "tags", "dict", where, optional=True) or {}
    for k, v in tags.items():
        if not isinstance(v, str):
            raise CorruptRecordError(f"{where}: tag {k!r} has a non-string value")
    return meta


def _artifact(rec: Mapping[str, Any], where: str) -> ArtifactEntry:
    path = checked_path(field_of(rec, "path", "str", where), where)
    digest = field_of(rec, "digest", "str", where)
    if not is_digest(digest):
        raise CorruptRecordError(f"{where}: {digest!r} is not a BLAKE3 digest")
    size = field_of(rec, "size", "int", where)
    kind = field_of(rec, "kind", "str", where, optional=True) or "file"
    logged = field_of(rec, "logged_at", "int", where, optional=True) or 0
    batch = field_of(rec, "batch", "int", where, optional=True) or 0
    return ArtifactEntry(path, digest, size, kind, logged, batch)


_NUMBER = {int, float, bool}


def _points(rec: Mapping[str, Any], where: str) -> list[MetricPoint]:
    """The metric points ``[key, value, step, time]`` of a record, checked column by column
    (a run's history can hold millions of points: each check is one pass in C)."""
    pts = field_of(rec, "points", "list", where)
    if not pts:
        return []
    if not set(map(type, pts)) <= {list, tuple} or set(map(len, pts)) != {4}:
        bad = next(p for p in pts if not isinstance(p, (list, tuple)) or len(p) != 4)
        raise CorruptRecordError(f"{where}: malformed metric point {bad!r}")
    keys, values, steps, times = zip(*pts)
    if (not set(map(type, keys)) <= {str} or not set(map(type, values)) <= _NUMBER
            or not set(map(type, steps)) <= {int, bool} or not set(map(type, times)) <= {int, bool}):
        bad = next(p for p in pts if not (isinstance(p[0], str) and isinstance(p[1], (int, float))
                                          and isinstance(p[2], int) and isinstance(p[3], int)))
        raise CorruptRecordError(f"{where}: malformed metric point {bad!r}")
    return list(zip(keys, map(float, values), steps, times))


def get_many(backend: Backend, keys: list[str]) -> list[bytes | None]:
    """The objects under ``keys``, ``None`` for those that vanished; concurrent on remote stores."""

    def one(k: str) -> bytes | None:
        try:
            return backend.get(k)
        except ObjectNotFoundError:
            return None

    if backend.concurrency <= 1 or len(keys) <= 1:
        return [one(k) for k in keys]
    with ThreadPoolExecutor(backend.concurrency, thread_name_prefix="casstore-read") as pool:
        return list(pool.map(one, keys))


def read_live_state(
    backend: Backend, run_id: str, known: Mapping[str, dict[str, Any]] | None = None,
    keys: Iterable[str] | None = None, batches: Mapping[int, Batch] | None = None,
    batches_upto: int | None = None, wal: WalDir | None = None, base: RunState | None = None,
    generation: int = 0,
) -> RunState:
    """Read a run from its records. ``known`` maps keys to records already in hand, and
    ``batches`` batch records by number (they are immutable, so they need not be read again).
    The batch records of a version-4 store are folded over the per-key records (which such a
    store has only for runs begun before it was upgraded). A record or batch that fails its
    checks is left out and named in ``damaged``. With ``wal``, the points of its metric logs
    that no segment or batch carries yet are added (see :mod:`casstore.runs.wal`).

    ``base``: for a run resumed into ``generation`` (``>= 1``), the state its previous seal
    holds; the batches of that generation are folded over it (those of earlier generations
    are in it, and may be gone: see :mod:`casstore.runs.compact`). A batch listed and then
    gone raises :class:`BatchVanished`: the run was sealed meanwhile and its seal is to be read."""
    prefix = run_prefix(run_id)
    all_keys = sorted(keys if keys is not None else backend.list(prefix))
    known = known or {}
    batches = dict(batches or {})
    batch_keys = {n: k for k in all_keys if _kind(k, prefix).startswith("batch-") and (n := batch_number(k)) is not None}
    want = [k for k in all_keys if k not in known and _kind(k, prefix) in _DECODED]
    want += [k for n, k in batch_keys.items() if n not in batches]
    fetched = dict(zip(want, get_many(backend, want)))
    damaged: list[DamagedRecord] = []
    for n, k in batch_keys.items():
        if n not in batches:
            data = fetched.get(k)
            if data is None:
                raise BatchVanished(f"batch record {k} was listed and then removed: the run was sealed meanwhile")
            try:
                batches[n] = decode_batch(data, k, n)
            except CorruptRecordError as e:
                damaged.append(DamagedRecord(k, str(e)))  # costs what it holds, not the run

    def rec(k: str) -> dict[str, Any] | None:
        if k in known:
            return known[k]
        data = fetched.get(k)
        return None if data is None else decode_record(data, f"record {k}")

    meta_key = prefix + "meta"
    meta = rec(meta_key) if meta_key in all_keys else None
    if meta is None and base is not None:
        meta = base.meta
    if meta is None:
        raise ObjectNotFoundError(f"no run {run_id} in this store (no {meta_key})")
    state = RunState(run_id, check_meta(meta, f"record {meta_key}"))
    if base is not None:  # what the previous seal holds: its per-key params, tags and metrics too
        state.params.update(base.params)
        state.tags.update(base.tags)
        state.points.extend(base.points)
        state.artifacts.update(base.artifacts)
        state.models.update(base.models)
        state.inputs.extend(base.inputs)
        state.damaged.extend(base.damaged)
    else:
        state.tags.update(meta.get("tags") or {})
    state.damaged.extend(damaged)
    tag_latest: dict[str, tuple[str, str | None]] = {}
    skip = _PER_KEY if base is not None else frozenset()
    for k in all_keys:
        kind = _kind(k, prefix)
        if kind not in _DECODED or k == meta_key or kind in skip:
            continue
        try:
            _take(state, tag_latest, k, kind, rec(k))
        except CorruptRecordError as e:
            # one damaged record costs what it holds, not the run
            state.damaged.append(DamagedRecord(k, str(e)))
    state.inputs = list({(i["digest"], i["context"]): i for i in state.inputs}.values())
    state.inputs.sort(key=lambda i: (i["logged_at"], i["digest"], i["context"]))
    for key, (_, latest) in tag_latest.items():
        if latest is None:  # deleted (delete_tag)
            state.tags.pop(key, None)
        else:
            state.tags[key] = latest
    folded = fold({n: batches[n] for n in batch_keys if n in batches}, batches_upto, generation if base else 0)
    for key, value in folded.params.items():
        state.params.setdefault(key, value)
    for key, latest in folded.tags.items():
        if latest is None:  # deleted (delete_tag)
            state.tags.pop(key, None)
        else:
            state.tags[key] = latest
    state.points.extend(folded.points)
    for path, (a, n) in folded.artifacts.items():
        state.artifacts.setdefault(path, ArtifactEntry(path, a[1], a[2], a[3], a[4], n))
    for n in batch_keys:
        logged = batches[n].wal if n in batches else None
        if logged is not None:  # counted or not, a batch's logged points are not pending any more
            state.covered.setdefault(logged[0], []).append((logged[1], logged[2]))
    if wal is not None:
        state.points.extend(wal.pending(run_id, state.covered))
    return state


def _take(state: RunState, tag_latest: dict[str, tuple[str, str | None]], k: str, kind: str,
          r: dict[str, Any] | None) -> None:
    """Add what the record ``r`` under ``k`` holds to ``state`` (``CorruptRecordError`` if malformed)."""
    if r is None:
        return
    where = f"record {k}"
    last = k.rsplit("/", 1)[-1]
    if kind == "artifacts":
        e = _artifact(r, where)
        if name_key(e.path) != last:
            raise CorruptRecordError(f"{where} names path {e.path!r}, which does not belong under this key")
        state.artifacts[e.path] = e
    elif kind == "params":
        key = field_of(r, "key", "str", where)
        if name_key(key) != last:
            raise CorruptRecordError(f"{where} names param {key!r}, which does not belong under this key")
        state.params[key] = field_of(r, "value", "str", where)
    elif kind == "tags":
        key = field_of(r, "key", "str", where)
        value = field_of(r, "value", "str", where)
        if name_key(key) != k.split("/")[-2]:
            raise CorruptRecordError(f"{where} names tag {key!r}, which does not belong under this key")
        cur = tag_latest.get(key)
        if cur is None or last > cur[0]:
            tag_latest[key] = (last, None if r.get("deleted") is True else value)
    elif kind == "metrics":
        points = _points(r, where)
        logged = r.get("wal")
        if logged is not None:
            if not (isinstance(logged, list) and len(logged) == 3 and isinstance(logged[0], str)
                    and all(isinstance(n, int) and not isinstance(n, bool) for n in logged[1:])):
                raise CorruptRecordError(f"{where}: malformed write-ahead log range {logged!r}")
            state.covered.setdefault(logged[0], []).append((logged[1], logged[2]))
        state.points.extend(points)
    elif kind == "models":
        name = checked_path(field_of(r, "name", "str", where), where)
        digest = field_of(r, "digest", "str", where)
        if not is_digest(digest) or name_key(name) != last:
            raise CorruptRecordError(f"{where} is not a valid model reference")
        state.models[name] = ModelRef(name, digest, field_of(r, "logged_at", "int", where, optional=True) or 0)
    elif kind == "inputs":
        state.inputs.append(check_input(r, where))


_DECODED = frozenset({"meta", "artifacts", "params", "tags", "metrics", "models", "inputs"})
#: the per-key records of params, tags and metrics (before version 4): a resumed run's are
#: all older than its previous seal, which holds them
_PER_KEY = frozenset({"params", "tags", "metrics"})


class BatchVanished(CorruptRecordError):
    """A batch record listed and then removed: its run was sealed meanwhile (the seal holds it)."""

#: the fields of a dataset input record, all strings but ``logged_at``
INPUT_FIELDS = ("name", "digest", "source_type", "source", "schema", "profile", "context")


def check_input(r: dict[str, Any], where: str) -> dict[str, Any]:
    """A dataset input record, checked: its string fields, ``tags`` and ``logged_at``."""
    out: dict[str, Any] = {k: field_of(r, k, "str", where) for k in INPUT_FIELDS}
    tags = field_of(r, "tags", "dict", where, optional=True) or {}
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        raise CorruptRecordError(f"{where}: dataset input tags are not strings")
    out["tags"] = dict(tags)
    out["logged_at"] = field_of(r, "logged_at", "int", where)
    return out


def _kind(key: str, prefix: str) -> str:
    return key[len(prefix):].split("/", 1)[0]


def manifest_of(state: RunState, status: str, end_time: int) -> dict[str, Any]:
    """The manifest (the seal's content) of a run in ``state``."""
    return {
        "v": RECORD_VERSION,
        "run_id": state.run_id,
        "meta": state.meta,
        "status": status,
        "end_time": end_time,
        "params": dict(state.params),
        "tags": dict(state.tags),
        "metrics": [list(p) for p in state.points],
        "artifacts": {
            p: {"digest": e.digest, "size": e.size, "kind": e.kind, "logged_at": e.logged_at,
                **({"batch": e.batch} if e.batch else {})}
            for p, e in state.artifacts.items()
        },
        "models": {n: m.digest for n, m in state.models.items()},
        "model_times": {n: m.logged_at for n, m in state.models.items()},
        # records that failed their checks when the run was sealed (left out above)
        **({"damaged": {d.key: d.detail for d in state.damaged}} if state.damaged else {}),
        # absent without inputs, so manifests of runs without any keep their bytes
        **({"inputs": [dict(i) for i in state.inputs]} if state.inputs else {}),
    }


def state_from_manifest(man: dict[str, Any], run_id: str, where: str) -> tuple[RunState, str, int]:
    """Decode a verified manifest; returns the state, the status and the end time."""
    if field_of(man, "run_id", "str", where) != run_id:
        raise CorruptRecordError(f"{where} belongs to run {man.get('run_id')!r}, not {run_id}")
    meta = check_meta(field_of(man, "meta", "dict", where), f"{where} (meta)")
    state = RunState(run_id, meta)
    _str_map(field_of(man, "params", "dict", where), state.params, f"{where} (params)")
    _str_map(field_of(man, "tags", "dict", where), state.tags, f"{where} (tags)")
    state.points = _points({"points": field_of(man, "metrics", "list", where)}, where)
    for path, a in field_of(man, "artifacts", "dict", where).items():
        if not isinstance(a, dict):
            raise CorruptRecordError(f"{where}: artifact {path!r} is malformed")
        state.artifacts[path] = _artifact({**a, "path": path}, f"{where} (artifact {path!r})")
    times = field_of(man, "model_times", "dict", where, optional=True) or {}
    for name, digest in field_of(man, "models", "dict", where).items():
        checked_path(name, where)
        if not is_digest(digest):
            raise CorruptRecordError(f"{where}: model {name!r} has no valid digest")
        t = times.get(name, 0)
        state.models[name] = ModelRef(name, digest, t if isinstance(t, int) else 0)
    for i, rec in enumerate(field_of(man, "inputs", "list", where, optional=True) or []):
        if not isinstance(rec, dict):
            raise CorruptRecordError(f"{where}: dataset input {i} is malformed")
        state.inputs.append(check_input(rec, f"{where} (input {i})"))
    damaged = field_of(man, "damaged", "dict", where, optional=True) or {}
    state.damaged = [DamagedRecord(str(k), str(v)) for k, v in damaged.items()]
    status = field_of(man, "status", "str", where)
    end_time = field_of(man, "end_time", "int", where)
    return state, status, end_time


def _str_map(src: dict[Any, Any], dst: dict[str, str], where: str) -> None:
    for k, v in src.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise CorruptRecordError(f"{where}: entry {k!r} is not a string pair")
        dst[k] = v

