"""A run's metric histories as columns, for charts.

:meth:`RunStore.get_run` gives a run whole, with one tuple per metric point; a chart
wants each metric as three arrays (steps, times, values) in step order. This reads a
sealed run's manifest alone (re-hashed against the seal's digest, as ``get_run`` does)
and checks and splits its points column by column, each check one pass in C. An open
run, or a sealed one whose seal or manifest is damaged, is read through ``get_run``,
which shows what of it can be verified.

>>> from casstore.runs import open_run_store
>>> store = open_run_store("memory://doc-columns")
>>> h = store.create_run(store.get_or_create_experiment("demo"))
>>> for step, loss in [(1, 0.5), (0, 0.9)]:
...     h.log_metric("loss", loss, step, 1000 + step)
>>> digest = h.end()
>>> sealed, cols = metric_columns(store, h.run_id)
>>> sealed == digest, list(cols["loss"].steps), list(cols["loss"].values)
(True, [0, 1], [0.9, 0.5])
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from casstore.exceptions import CorruptRecordError, IntegrityError
from casstore.runs.layout import check_run_id
from casstore.runs.records import field_of

if TYPE_CHECKING:
    from casstore.runs.store import RunStore

__all__ = ["MetricColumns", "metric_columns", "point_columns"]


@dataclass
class MetricColumns:
    """One metric's history: steps, times (ms since the epoch) and values, ordered by step
    then time (points logged at the same step and time stay in logging order)."""

    steps: array[int]
    times: array[int]
    values: array[float]

    def __len__(self) -> int:
        return len(self.values)


def metric_columns(
    store: RunStore, run_id: str, seal: dict[str, Any] | None = None
) -> tuple[str | None, dict[str, MetricColumns]]:
    """Every metric history of a run, by key, and the digest of the seal they were read
    under (``None`` for a run that is open or shown from its own records: it can change).
    ``seal``: the run's :meth:`RunStore.seal_record`, if the caller has read it."""
    run_id = check_run_id(run_id)
    if seal is None:
        try:
            seal = store.seal_record(run_id)
        except CorruptRecordError:
            seal = None
    if seal is not None:
        digest, where = str(seal["digest"]), f"manifest of run {run_id}"
        try:
            man = store.read_manifest(run_id, digest, seal)
            if field_of(man, "run_id", "str", where) == run_id:
                return digest, point_columns(field_of(man, "metrics", "list", where), where)
        except (IntegrityError, CorruptRecordError):
            pass  # get_run shows it from its own records and names the damage
    return None, point_columns(store.get_run(run_id, flush=False).points, f"run {run_id}")


def point_columns(points: Sequence[Any], where: str) -> dict[str, MetricColumns]:
    """Metric points ``[key, value, step, time]`` as columns by key; a malformed point is a
    :class:`CorruptRecordError` naming ``where``."""
    if not points:
        return {}
    if not set(map(type, points)) <= {list, tuple} or set(map(len, points)) != {4}:
        raise CorruptRecordError(f"{where}: a metric point is not [key, value, step, time]")
    # columns as lists of the decoded objects: no tuple or list is made per point (each would
    # be one more for the garbage collector to trace)
    keys, values, steps, times = (list(map(itemgetter(i), points)) for i in range(4))
    if not set(map(type, keys)) <= {str}:
        raise CorruptRecordError(f"{where}: a metric point's key is not a string")
    try:  # sorting refuses what does not compare, each array anything but numbers (integers
        # for steps and times); by key, then step, then time: stable sorts by each, last first,
        # so points logged at the same step and time keep their logging order
        order = sorted(range(len(points)), key=times.__getitem__)
        order.sort(key=steps.__getitem__)
        order.sort(key=keys.__getitem__)
        vs = array("d", [values[i] for i in order])
        ss = array("q", [steps[i] for i in order])
        ts = array("q", [times[i] for i in order])
    except (TypeError, OverflowError) as e:
        raise CorruptRecordError(f"{where}: a metric point is malformed ({e})") from e
    out, lo = {}, 0
    for key, count in sorted(Counter(keys).items()):  # the keys' spans, in the order sorted by key
        out[key] = MetricColumns(ss[lo:lo + count], ts[lo:lo + count], vs[lo:lo + count])
        lo += count
    return out
