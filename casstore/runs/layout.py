"""Where runs and experiments live on the store (see docs/design.md, "Runs").

Every user-chosen name (artifact path, param or tag key, experiment or model name)
is mapped to a fixed-length hex key, so no name can form an unsafe object key; the
record stored under it carries the real name. Content objects (chunks, recipes and
model entries) are not here: their keys depend on the store's format version, which
:class:`casstore.objects.ContentLayout` knows.
"""

from __future__ import annotations

import operator
import os
import re
import time
import uuid

from blake3 import blake3

from casstore.exceptions import InvalidInputError

__all__ = [
    "RECORD_VERSION",
    "DEFAULT_EXPERIMENT_ID",
    "DEFAULT_EXPERIMENT_NAME",
    "name_key",
    "new_run_id",
    "new_experiment_id",
    "check_run_id",
    "is_run_id",
    "check_experiment_id",
    "now_ms",
    "unique_suffix",
    "run_prefix",
    "run_meta_key",
    "artifact_key",
    "dirs_prefix",
    "dir_marker_key",
    "param_key",
    "tag_prefix",
    "tag_key",
    "metrics_prefix",
    "metric_segment_key",
    "model_ref_key",
    "manifest_key",
    "seal_key",
    "reopen_prefix",
    "reopen_key",
    "deleted_key",
    "experiment_meta_key",
    "experiment_name_key",
    "experiment_runs_prefix",
    "experiment_run_key",
    "parse_entry",
    "entry_time",
    "experiment_entry_key",
    "time_prefix",
    "check_name",
    "check_whole",
    "MAX_NAME_LEN",
]

RECORD_VERSION = 1
DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT_NAME = "Default"

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
_EXPERIMENT_ID = re.compile(r"^(?:[0-9]{1,20}|[0-9a-f]{32})$")


def name_key(name: str) -> str:
    """First 32 hex of the BLAKE3 of the UTF-8 name: a safe, fixed-length object name."""
    return blake3(name.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def new_run_id() -> str:
    return uuid.uuid4().hex


def _time_id(at: float | None) -> str:
    """A UUID version 7 (RFC 9562) in hex: 32 characters whose first 12 are the milliseconds
    since the epoch at ``at`` (seconds; now if ``None``), the rest random, so that names
    made later sort after."""
    ms = int(time_prefix(time.time() if at is None else at), 16)
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms << 80) | (0x7 << 76) | ((rand >> 62) & 0xFFF) << 64 | (0b10 << 62) | (rand & ((1 << 62) - 1))
    return f"{value:032x}"


def time_prefix(at: float) -> str:
    """The first 12 characters of the time-ordered ids made at ``at`` (seconds since the
    epoch): every id made later sorts after it."""
    return f"{int(at * 1000) & ((1 << 48) - 1):012x}"


def entry_time(name: str) -> float | None:
    """The time (seconds since the epoch) an experiment's entry named by time was named at
    (:func:`experiment_entry_key`), or ``None`` for an entry named by its run id."""
    if len(name) > 32 and name[12] == "7" and name[16] in "89ab" and _RUN_ID.match(name[:32]):
        return int(name[:12], 16) / 1000
    return None


def new_experiment_id() -> str:
    return uuid.uuid4().hex


def is_run_id(s: object) -> bool:
    return isinstance(s, str) and bool(_RUN_ID.match(s))


def check_run_id(run_id: object) -> str:
    """Return ``run_id`` if it is a well-formed run id (32 lowercase hex), else raise."""
    if isinstance(run_id, str) and _RUN_ID.match(run_id):
        return run_id
    raise InvalidInputError(
        f"{run_id!r} is not a run id: run ids are 32 lowercase hex characters, as in run.info.run_id"
    )


def check_experiment_id(experiment_id: object) -> str:
    if isinstance(experiment_id, int) and not isinstance(experiment_id, bool) and experiment_id >= 0:
        experiment_id = str(experiment_id)
    if isinstance(experiment_id, str) and _EXPERIMENT_ID.match(experiment_id):
        return experiment_id
    raise InvalidInputError(
        f"{experiment_id!r} is not an experiment id: expected a decimal string such as '0' or "
        "32 hex characters, as in experiment.experiment_id"
    )


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def unique_suffix() -> str:
    """A name unique to this writer and instant that sorts by time: ``<time_ns>-<pid>-<rand>``."""
    return f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def run_prefix(run_id: str) -> str:
    return f"runs/{run_id}/"


def run_meta_key(run_id: str) -> str:
    return f"runs/{run_id}/meta"


def artifact_key(run_id: str, path: str) -> str:
    return f"runs/{run_id}/artifacts/{name_key(path)}"


def dirs_prefix(run_id: str) -> str:
    return f"runs/{run_id}/dirs/"


def dir_marker_key(run_id: str, path: str) -> str:
    """The marker record of a directory of a run's artifacts (written before its first file)."""
    return f"runs/{run_id}/dirs/{name_key(path)}"


def param_key(run_id: str, key: str) -> str:
    return f"runs/{run_id}/params/{name_key(key)}"


def tag_prefix(run_id: str, key: str) -> str:
    return f"runs/{run_id}/tags/{name_key(key)}/"


def tag_key(run_id: str, key: str) -> str:
    return tag_prefix(run_id, key) + unique_suffix()


def input_key(run_id: str, dataset_digest: str, context: str) -> str:
    """A dataset the run used (``log_input``), once per dataset digest and context."""
    return f"runs/{run_id}/inputs/{name_key(dataset_digest + '/' + context)}"


def metrics_prefix(run_id: str) -> str:
    return f"runs/{run_id}/metrics/"


def metric_segment_key(run_id: str) -> str:
    return metrics_prefix(run_id) + unique_suffix()


def model_ref_key(run_id: str, name: str) -> str:
    return f"runs/{run_id}/models/{name_key(name)}"


def manifest_key(run_id: str, digest: str) -> str:
    return f"runs/{run_id}/manifests/{digest}"


def seal_key(run_id: str, generation: int = 0) -> str:
    """The seal of a run's ``generation``: 0 is its first end (``seal``); a run resumed
    after it ended is sealed again under ``seals/<generation>``."""
    return f"runs/{run_id}/seal" if generation == 0 else f"runs/{run_id}/seals/{generation:08d}"


def closing_key(run_id: str, generation: int = 0) -> str:
    """Before version 4: the marker an end of ``generation`` creates before it lists the run
    (status and end time), so a writer that binds a record after that listing finds it and
    checks the seal (see ``RunHandle._sealed_or_closed``)."""
    return f"runs/{run_id}/closing" if generation == 0 else f"runs/{run_id}/closings/{generation:08d}"


def reopen_prefix(run_id: str) -> str:
    return f"runs/{run_id}/reopened/"


def reopen_key(run_id: str, generation: int) -> str:
    """The marker that opened ``generation`` of a run (``>= 1``): it was resumed after the
    seal of ``generation - 1``."""
    return f"{reopen_prefix(run_id)}{generation:08d}"


def deleted_key(run_id: str) -> str:
    return f"runs/{run_id}/deleted"


def experiment_meta_key(experiment_id: str) -> str:
    return f"experiments/{experiment_id}/meta"


def experiment_name_key(name: str) -> str:
    return f"experiments/names/{name_key(name)}"


def experiment_events_prefix(experiment_id: str) -> str:
    return f"experiments/{experiment_id}/events/"


def experiment_event_key(experiment_id: str) -> str:
    """A new event of an experiment (tag set or deleted, renamed, deleted, restored); the
    events, read in key order, give its current state."""
    return experiment_events_prefix(experiment_id) + unique_suffix()


def experiment_runs_prefix(experiment_id: str) -> str:
    return f"experiments/{experiment_id}/runs/"


def experiment_run_key(experiment_id: str, run_id: str) -> str:
    return f"experiments/{experiment_id}/runs/{run_id}"


def experiment_reopen_key(experiment_id: str, run_id: str, generation: int) -> str:
    """Beside a run's index entry: the run was resumed into ``generation`` (so a search's one
    listing of the experiment's runs tells which cached summaries a resumption made stale)."""
    return f"experiments/{experiment_id}/runs/{run_id}.g{generation:08d}"


def experiment_entry_key(experiment_id: str, run_id: str, generation: int = 0, at: float | None = None) -> str:
    """A run's entry in its experiment named by the time ``at`` (the service's clock; from store
    format 6): ``<time id>.<run_id>``, written when the run is created, and again (a **note**)
    when the first one's name is older than the service's clock allows; with ``generation``,
    ``<time id>.<run_id>.g<generation>``, the note that the run was resumed into it. A search
    that lists only the entries named after a point it has passed sees them all (see
    casstore/runs/index.py)."""
    suffix = f".g{generation:08d}" if generation else ""
    return f"experiments/{experiment_id}/runs/{_time_id(at)}.{run_id}{suffix}"


_NOTE = re.compile(r"^[0-9a-f]{32}\.([0-9a-f]{32})(?:\.g(\d{8}))?$")
_REOPEN = re.compile(r"^([0-9a-f]{32})\.g(\d{8})$")


def parse_entry(name: str) -> tuple[str, int] | None:
    """What an entry of ``experiments/<id>/runs/`` says: ``(run_id, generation)``, generation
    0 for the run's entry (named by its id, or by time), ``g`` for a resumption into ``g``;
    ``None`` for a name that is none of these."""
    if _RUN_ID.match(name):
        return name, 0
    m = _REOPEN.match(name) or _NOTE.match(name)
    if m is None:
        return None
    return m.group(1), int(m.group(2) or 0)


_NAME = re.compile(r"^[/\w.\- :]+$")
MAX_NAME_LEN = 250


def check_name(kind: str, name: object) -> str:
    """Check a param, metric or tag key (MLflow's rules): letters, digits, ``_ - . / : `` and space,
    at most 250 characters, and no ``..`` or empty part that could alias another name as a path."""
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"{kind} key must be a non-empty string, got {name!r}")
    if len(name) > MAX_NAME_LEN:
        raise InvalidInputError(f"{kind} key {name[:40]!r}... is longer than {MAX_NAME_LEN} characters")
    if not _NAME.match(name):
        raise InvalidInputError(
            f"invalid {kind} key {name!r}: keys may only contain letters, digits, underscores (_), "
            "dashes (-), periods (.), spaces ( ), colons (:) and slashes (/)"
        )
    if name.startswith("/") or any(p in ("", ".", "..") for p in name.split("/")):
        raise InvalidInputError(
            f"invalid {kind} key {name!r}: a key may not start with '/' or have an empty, '.' or '..' part "
            "(it would name the same file as another key)"
        )
    return name


_INT64 = (-(1 << 63), (1 << 63) - 1)


def check_whole(n: object, what: str) -> int:
    """``n`` as an int: an integer of any type ``operator.index`` takes (``int``, ``numpy.int64``,
    ...) but not a bool, or a float with no fractional part (``3.0``); within int64, as MLflow
    stores steps and timestamps. ``what`` names the value in the error."""
    value: int | None = None
    if isinstance(n, float):
        if n.is_integer():
            value = int(n)
    elif not isinstance(n, bool):
        try:
            value = operator.index(n)  # type: ignore[arg-type]
        except TypeError:
            value = None
    if value is None:
        raise InvalidInputError(f"{what} must be an integer, got {type(n).__name__} {n!r}")
    if not _INT64[0] <= value <= _INT64[1]:
        raise InvalidInputError(f"{what} must fit in 64 bits (as MLflow stores it), got {value}")
    return value
