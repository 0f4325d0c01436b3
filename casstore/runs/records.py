"""What the runs layer hands out: experiments, artifact entries, model refs, run views.

Also the decoding of stored run records, which checks each field's type so a
damaged or forged record is a :class:`CorruptRecordError`, never a crash.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from operator import itemgetter
from typing import Any

from blake3 import blake3

from casstore._paths import clean_artifact_path
from casstore.exceptions import CorruptRecordError, InvalidInputError
from casstore.objects.codec import CHECK_FIELD, pack, pack_checked, unpack, unpack_checked
from casstore.runs.layout import artifact_key

__all__ = ["Experiment", "ArtifactEntry", "DamagedRecord", "FLUSH_POINTS", "FLUSH_SECONDS", "INLINE", "ModelRef", "MetricPoint",
           "RunView", "point_key", "decode_record", "encode_record", "record_is_checked", "field_of"]

#: the kind of an artifact whose content its binding record holds
INLINE = "inline"

#: one logged metric value: ``(key, value, step, timestamp_ms)``
MetricPoint = tuple[str, float, int, int]


def point_key(point: MetricPoint) -> tuple[str, str, int, int]:
    """A metric point as a key equal to every copy of it, to count points with (a NaN value,
    as a diverging loss logs, equals nothing, not even itself read back).

    >>> point_key(("loss", float("nan"), 3, 7)) == point_key(("loss", float("nan"), 3, 7))
    True
    """
    return point[0], float(point[1]).hex(), point[2], point[3]

#: a run handle writes the metric points it buffers once this many wait, or once the oldest
#: has waited this many seconds (see :mod:`casstore.runs.metrics`; a run store's defaults)
FLUSH_POINTS = 1000
FLUSH_SECONDS = 5.0


@dataclass(frozen=True)
class Experiment:
    """An experiment: a named group of runs (MLflow's ``Experiment`` shape)."""

    experiment_id: str
    name: str
    tags: dict[str, str] = field(default_factory=dict)
    creation_time: int = 0
    lifecycle_stage: str = "active"
    artifact_location: str = ""
    #: when it last changed (a tag, its name, deletion); its creation time if never
    last_update_time: int = 0

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        """``dict(experiment)``: (name, value) pairs, as MLflow's entities give."""
        return iter(asdict(self).items())


@dataclass(frozen=True)
class ArtifactEntry:
    """One bound artifact: ``path`` in the run, the BLAKE3 ``digest`` and ``size`` of its content.

    ``kind`` says where the content is: ``file``, a file of the object store (by digest);
    ``inline``, the ``data`` field of the artifact's own binding record (a small artifact in
    a version-3 store), checked against ``digest`` when read."""

    path: str
    digest: str
    size: int
    kind: str = "file"
    logged_at: int = 0
    #: the number of the batch record holding the binding (and an inline artifact's
    #: content); 0 for an artifact with a binding record of its own
    batch: int = 0

    @property
    def inline(self) -> bool:
        """Whether the content is held in the artifact's binding record."""
        return self.kind == INLINE

    def to_record(self) -> dict[str, Any]:
        return {"v": 1, "path": self.path, "kind": self.kind, "digest": self.digest, "size": self.size,
                "logged_at": self.logged_at}


@dataclass(frozen=True)
class ModelRef:
    """A model logged in a run: its name (directory) and the digest of its model entry."""

    name: str
    digest: str
    logged_at: int = 0


@dataclass(frozen=True)
class DamagedRecord:
    """A record of a run that failed its checks, so what it holds is left out of the run."""

    key: str
    detail: str

    @property
    def kind(self) -> str:
        """The record kind: ``artifacts``, ``params``, ``tags``, ``metrics``, ``batches``, ``models``,
        ``manifests``, ``seal``."""
        parts = self.key.split("/")
        kind = parts[2] if len(parts) > 2 else ""
        return "batches" if kind.startswith("batch-") else kind  # version 4's runs/<id>/batch-<n>

    def describe(self) -> str:
        what = {"artifacts": "an artifact (its path is in the damaged record)", "params": "a param",
                "tags": "a tag value", "metrics": "a batch of metric points", "models": "a logged model",
                "batches": "the params, tags and metric points of one logging call (a batch record)",
                "manifests": "the sealed manifest", "seal": "the seal"}.get(self.kind, "a record")
        return f"{self.key} ({what}): {self.detail}"


@dataclass(frozen=True)
class RunView:
    """A read-only picture of a run: from its verified manifest if sealed, else from its live records."""

    run_id: str
    run_name: str
    experiment_id: str
    status: str
    start_time: int
    end_time: int | None
    digest: str | None
    sealed: bool
    deleted: bool
    params: dict[str, str]
    tags: dict[str, str]
    metrics: dict[str, float]
    artifacts: dict[str, ArtifactEntry]
    models: dict[str, ModelRef]
    points: tuple[MetricPoint, ...] = ()
    #: a search result's artifact count and bytes (its ``artifacts`` are not listed)
    counts: tuple[int, int] | None = None

    @property
    def artifact_count(self) -> int:
        return self.counts[0] if self.counts is not None else len(self.artifacts)

    @property
    def artifact_bytes(self) -> int:
        return self.counts[1] if self.counts is not None else sum(a.size for a in self.artifacts.values())
    #: datasets the run used (``log_input``), as their records say
    inputs: tuple[dict[str, Any], ...] = ()
    #: records that failed their checks: what they hold is not in this view
    damaged: tuple[DamagedRecord, ...] = ()

    def artifact_damage(self, path: str) -> DamagedRecord | None:
        """The damaged binding record of the artifact at ``path``, if that is why it is missing."""
        key = artifact_key(self.run_id, path)
        return next((d for d in self.damaged if d.key == key), None)

    @property
    def artifact_uri(self) -> str:
        """Where the run's artifacts are addressed: ``runs:/<run_id>``."""
        return f"runs:/{self.run_id}"

    def metric_history(self, key: str) -> list[tuple[float, int, int]]:
        """Every value logged for ``key`` as ``(value, step, timestamp)``, by step then time."""
        hist = [(v, s, t) for k, v, s, t in self.points if k == key]
        hist.sort(key=lambda p: (p[1], p[2]))
        return hist


def latest_metrics(points: tuple[MetricPoint, ...] | list[MetricPoint]) -> dict[str, float]:
    """The latest value of each metric: greatest step, then greatest timestamp, then last logged."""
    # a stable sort by (step, time) keeps logging order among ties: the last one of a key wins
    latest = {k: v for k, v, _, _ in sorted(points, key=itemgetter(2, 3))}
    return dict(sorted(latest.items()))


def encode_record(rec: dict[str, Any]) -> bytes:
    """The stored bytes of a record of a run, an experiment or the registry: canonical
    msgpack carrying its own BLAKE3 (``b3``), so any damage is found when it is read."""
    return pack_checked(rec)


def _renamed_check(rec: dict[str, Any]) -> str | None:
    """The field of a record without ``b3`` that holds the BLAKE3 of the rest: a check field
    whose name was damaged (a record written before checks has no such field)."""
    for k, v in rec.items():
        if len(k) == len(CHECK_FIELD) and isinstance(v, str) and len(v) == 64:
            rest = {kk: vv for kk, vv in rec.items() if kk != k}
            if blake3(pack(rest)).hexdigest() == v:
                return k
    return None


def record_is_checked(data: bytes, where: str) -> bool:
    """Check a stored record's bytes: ``True`` if it carries its own check (and it holds),
    ``False`` for a record written before records checked themselves (it can only be
    decoded); :class:`CorruptRecordError` if it is damaged."""
    decode_record(data, where)
    rec = unpack(data, where)
    return isinstance(rec, dict) and CHECK_FIELD in rec


def decode_record(data: bytes, where: str, *, use_list: bool = True) -> dict[str, Any]:
    """Decode a stored record, check its own BLAKE3 (records written before checks existed
    have none and are taken as decoded), and check it is a mapping with a supported version.
    A damaged record is a :class:`CorruptRecordError` naming ``where``, never a value.
    ``use_list=False``: its arrays as tuples (see :func:`casstore.objects.codec.unpack`)."""
    rec = unpack_checked(data, where, use_list=use_list)
    if isinstance(rec, dict) and CHECK_FIELD not in rec and (bad := _renamed_check(rec)) is not None:
        raise CorruptRecordError(
            f"{where} has a damaged check field ({bad!r} holds its BLAKE3): its bytes were changed after it was "
            "written; run `casstore verify --all` to see what it affects"
        )
    if not isinstance(rec, dict):
        raise CorruptRecordError(f"{where} is not a record (expected a map); the store may be corrupt")
    v = rec.get("v")
    if not isinstance(v, int) or v < 1:
        raise CorruptRecordError(f"{where} has no valid format version; the store may be corrupt")
    return rec


_TYPES: Mapping[str, type | tuple[type, ...]] = {
    "str": str,
    "int": int,
    "float": (int, float),
    "dict": dict,
    "list": (list, tuple),  # tuples: a record decoded with use_list=False
}


def checked_path(path: str, where: str) -> str:
    """``path`` if it is a safe, canonical artifact path, else :class:`CorruptRecordError`."""
    try:
        clean = clean_artifact_path(path)
    except InvalidInputError as e:
        raise CorruptRecordError(f"{where} holds an unsafe path ({e}); the record was tampered with") from e
    if clean != path:
        raise CorruptRecordError(f"{where} holds a non-canonical path {path!r}; the record was tampered with")
    return path


def field_of(rec: Mapping[str, Any], name: str, kind: str, where: str, *, optional: bool = False) -> Any:
    """``rec[name]`` checked to be of ``kind`` ("str", "int", "float", "dict", "list")."""
    if name not in rec or rec[name] is None:
        if optional:
            return None
        raise CorruptRecordError(f"{where} lacks the field {name!r}; the store may be corrupt")
    value = rec[name]
    if isinstance(value, bool) or not isinstance(value, _TYPES[kind]):
        raise CorruptRecordError(f"{where}: field {name!r} should be {kind}, got {type(value).__name__}")
    return value
