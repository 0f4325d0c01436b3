"""Everything the web UI reads from a store, in one place.

The pages never touch the store themselves: they ask a :class:`UIData`. It only
reads (runs, the registry, space accounting, a gc dry run, verification), so the
UI cannot change a store.

The runs table is a query of the search index (``RunStore.indexed_runs``, see
``casstore/runs/index.py``): run summaries published beside the store as immutable
segments, merged into a SQLite cache on this machine and checked against each run
before it is first shown. Each page lists the experiment's runs (the source of truth),
merges the segments it has not seen, reads the runs no segment covers (open ones, every
time) and asks SQLite for the page, the count of matches and the table's columns.
Filters and sorting are casstore's own search grammar and order, as in
``RunStore.search_runs``. The cache lives on the user's machine: the UI sends no write
to the store.

Metric charts: a sealed run's histories are read once per run digest (a sealed run never
changes) as columns (``casstore.runs.columns``) and kept in a small LRU, then cut to a
fixed number of buckets, keeping each bucket's minimum and maximum, so a chart of a
100,000-point history keeps its shape in a thousand points.
"""

from __future__ import annotations

import base64
import bisect
import binascii
import dataclasses
import functools
import json
import threading
import time
import uuid
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from casstore._paths import clean_artifact_path, clean_optional_path
from casstore.exceptions import CasstoreError, CorruptRecordError, InvalidInputError, ObjectNotFoundError
from casstore.runs import RunStore, layout, search
from casstore.runs.columns import metric_columns
from casstore.runs.records import ArtifactEntry, Experiment, RunView
from casstore.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

__all__ = ["UIData", "RunPage", "Series", "Job", "Computed", "ArtifactNode", "artifact_tree", "PAGE_SIZE", "MAX_PAGE_SIZE"]

PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
#: buckets a chart is cut into (each gives at most its minimum and its maximum)
CHART_BUCKETS = 600
#: metric points kept in memory across runs (three numbers each)
SERIES_CACHE_POINTS = 4_000_000
#: sealed runs whose views (without their points) are kept in memory
VIEW_CACHE_RUNS = 256
#: seconds the store page waits for space accounting and the gc dry run (each a scan of
#: every run: minutes on a large remote store) before it shows what it has and refreshes
STORE_WAIT = 5.0
#: a store figure older than this is computed again (in the background, the old one shown meanwhile)
STORE_FRESH = 60.0


@dataclass
class Computed:
    """A figure of the store page: its value (None until first computed), when its
    computation began (epoch seconds), and whether a newer one is being computed."""

    value: Any
    at: float | None
    pending: bool


# ---- the runs table ------------------------------------------------------------------------


@dataclass
class RunPage:
    """One page of an experiment's runs table."""

    runs: list[RunView]
    total: int  # runs matching the filter
    next_token: str | None
    param_keys: list[str]
    metric_keys: list[str]
    as_of: float  # when the page was asked of the store (epoch seconds)
    #: the experiment's runs that could not be read and are left out: run id -> why
    skipped: dict[str, str] = field(default_factory=dict)


def _encode_token(offset: int, last_run: str) -> str:
    raw = json.dumps({"o": offset, "r": last_run}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        d = json.loads(raw)
        offset, last = d["o"], d["r"]
        if not isinstance(offset, int) or offset < 0 or not isinstance(last, str):
            raise ValueError(d)
    except (ValueError, KeyError, TypeError, binascii.Error) as e:
        raise InvalidInputError(f"page token {token[:40]!r} is not one this server gave; start from the first page") from e
    return offset, last


# ---- metric series -------------------------------------------------------------------------


@dataclass
class Series:
    """One metric of one run: steps, times (ms) and values, ordered by step then time."""

    run_id: str
    key: str
    steps: array[int]
    times: array[int]
    values: array[float]

    def __len__(self) -> int:
        return len(self.values)

    def downsampled(self, x: str = "step", buckets: int = CHART_BUCKETS) -> dict[str, Any]:
        """The series for a chart: ``x`` is ``step`` or ``time`` (seconds since the first
        point). At most ``2 * buckets + 2`` points: each bucket of equal x range keeps its
        lowest and its highest value, in x order, so peaks and dips stay visible."""
        xs: Sequence[float]
        ys: Sequence[float]
        if x == "time":
            order = sorted(range(len(self.times)), key=self.times.__getitem__)  # stable: by step among equal times
            t0 = self.times[order[0]] if order else 0
            xs, ys = [(self.times[i] - t0) / 1000.0 for i in order], [self.values[i] for i in order]
        elif x == "step":
            xs, ys = self.steps, self.values
        else:
            raise InvalidInputError(f"x must be 'step' or 'time', got {x!r}")
        n = len(ys)
        if n <= 2 * buckets:
            out_x, out_y = list(xs), [_finite(v) for v in ys]
        else:
            out_x, out_y = [], []
            lo, width = xs[0], ((xs[-1] - xs[0]) / buckets) or 1.0
            i = 0
            while i < n:
                b = int((xs[i] - lo) / width) + 1  # the bucket's end, in widths from the start
                j = max(i + 1, bisect.bisect_left(xs, lo + b * width, i)) if b < buckets else n
                keep = {i + k for k in _extremes(ys[i:j])}
                keep |= ({0} if i == 0 else set()) | ({n - 1} if j == n else set())
                for k in sorted(keep):  # the ends stay too, so the chart spans the whole series
                    out_x.append(xs[k])
                    out_y.append(_finite(ys[k]))
                i = j
        return {"run_id": self.run_id, "key": self.key, "x": x, "points": n, "sampled": len(out_x) < n,
                "xs": out_x, "ys": out_y}


def _extremes(seg: Sequence[float]) -> tuple[int, int]:
    """Where the lowest and the highest value of ``seg`` are (NaN, a gap, only if all are)."""
    lo, hi = min(seg), max(seg)
    if lo != lo or hi != hi:  # the first is NaN, which compares with nothing: look among the numbers
        numbers = [v for v in seg if v == v]
        if not numbers:
            return 0, 0
        lo, hi = min(numbers), max(numbers)
    return seg.index(lo), seg.index(hi)


def _finite(v: float) -> float | None:
    return v if v == v and v not in (float("inf"), float("-inf")) else None


# ---- artifacts -----------------------------------------------------------------------------


@dataclass
class ArtifactNode:
    """A directory of a run's artifact tree (files are :class:`ArtifactEntry`)."""

    name: str
    path: str
    dirs: list[ArtifactNode] = field(default_factory=list)
    files: list[ArtifactEntry] = field(default_factory=list)
    size: int = 0
    count: int = 0


def artifact_tree(artifacts: dict[str, ArtifactEntry]) -> ArtifactNode:
    """The run's artifacts as a tree of directories, each with its total size and file count."""
    root = ArtifactNode("", "")
    index = {"": root}
    for path in sorted(artifacts):
        entry = artifacts[path]
        parts = path.split("/")
        node = root
        for i in range(len(parts) - 1):
            sub = "/".join(parts[: i + 1])
            child = index.get(sub)
            if child is None:
                child = index[sub] = ArtifactNode(parts[i], sub)
                node.dirs.append(child)
            node = child
        node.files.append(entry)
        for i in range(len(parts)):
            n = index.get("/".join(parts[:i]))
            if n is not None:
                n.size += entry.size
                n.count += 1
    return root


# ---- background jobs (verify) --------------------------------------------------------------


@dataclass
class Job:
    """A verification started from the store page: progress while it runs, then its report."""

    id: str
    what: str
    run_id: str | None
    started: float
    stage: str = "starting"
    done: int = 0
    total: int | None = None
    finished: float | None = None
    result: dict[str, Any] | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "what": self.what, "run_id": self.run_id, "stage": self.stage, "done": self.done,
                "total": self.total, "finished": self.finished is not None, "result": self.result,
                "error": self.error, "seconds": round((self.finished or time.time()) - self.started, 2)}


# ---- the data source -----------------------------------------------------------------------


class UIData:
    """What the UI shows of one store, read-only.

    >>> from casstore.runs import open_run_store
    >>> store = open_run_store("memory://doc-ui")
    >>> h = store.create_run(store.get_or_create_experiment("demo"), run_name="first")
    >>> h.log_metric("acc", 0.9, 0, 0)
    >>> digest = h.end()
    >>> page = UIData(store).search(store.get_or_create_experiment("demo"), "metrics.acc > 0.5")
    >>> [r.run_name for r in page.runs]
    ['first']
    """

    def __init__(self, runs: RunStore) -> None:
        self.runs = runs
        self.url = runs.url
        self._lock = threading.Lock()
        self._series: OrderedDict[tuple[str, str | None], dict[str, Series]] = OrderedDict()
        self._series_points = 0
        self._series_lock = threading.Lock()
        self._views: OrderedDict[tuple[str, str], RunView] = OrderedDict()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._cached: dict[str, tuple[float, Any]] = {}
        self._computing: dict[str, threading.Thread] = {}
        self._failed: dict[str, BaseException] = {}

    # ---- experiments ------------------------------------------------------------------

    def experiments(self) -> tuple[list[tuple[Experiment, int]], list[str]]:
        """Every experiment (deleted ones too) with its number of runs (deleted ones included),
        newest first; and a sentence for each damaged record the listing met (an experiment
        it left out)."""
        damaged: list[str] = []
        out = []
        for exp in reversed(self.runs.list_experiments(on_damaged=damaged.append)):
            out.append((exp, len(self.runs.listed_run_ids(exp.experiment_id))))
        return out, damaged

    def experiment(self, experiment_id: str) -> Experiment:
        """The experiment; :class:`ObjectNotFoundError` naming it if the store has none."""
        try:
            return self.runs.get_experiment(experiment_id)
        except InvalidInputError as e:
            raise ObjectNotFoundError(f"no experiment with id {experiment_id!r} in store {self.url}") from e

    def warm(self) -> None:
        """Bring the search index up to date for every run (the server does this as it starts,
        so the first page it shows does not wait for segments to be merged)."""
        self.runs.indexed_runs(None)

    def search(
        self,
        experiment_id: str,
        filter_string: str = "",
        order_by: str | None = None,
        *,
        deleted: bool = False,
        page_size: int = PAGE_SIZE,
        token: str | None = None,
    ) -> RunPage:
        """One page of an experiment's runs that match an MLflow filter, in ``order_by``
        order then newest first (as ``RunStore.search_runs``). ``deleted``: deleted runs
        too. :class:`InvalidInputError` with the parser's message for a bad filter."""
        exp = self.experiment(experiment_id)
        # the runs of a deleted experiment count as deleted while it is (as MLflow marks them)
        dead = [exp.experiment_id] if exp.lifecycle_stage == "deleted" else []
        comparisons = search.parse_filter(filter_string or "")
        keys = search.parse_order_by([order_by] if order_by else None)
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise InvalidInputError(f"page size must be from 1 to {MAX_PAGE_SIZE}, got {page_size}")
        as_of = time.time()
        idx, ids = self.runs.indexed_runs([experiment_id])
        which = None if deleted else False
        total = idx.count(ids, comparisons, which, dead)
        start = 0
        if token:
            offset, last = _decode_token(token)
            # keyset: go on after the last run shown, wherever it is now (runs started or
            # deleted since move it); looked for within a page of where it was
            lo = max(0, offset - page_size)
            near, _ = idx.search(ids, comparisons, keys, which, 2 * page_size, lo, dead)
            start = next((lo + i + 1 for i, v in enumerate(near) if v.run_id == last), offset)
        page, more = idx.search(ids, comparisons, keys, which, page_size, start, dead)
        param_keys, metric_keys = idx.keys(ids, which, dead)
        skipped = {r: why for r, why in sorted(idx.skipped.items()) if r in set(ids)}
        return RunPage(page, total, _encode_token(start + len(page), page[-1].run_id) if more and page else None,
                       param_keys, metric_keys, as_of, skipped)

    # ---- runs ------------------------------------------------------------------------

    def run(self, run_id: str) -> RunView:
        """A run (verified manifest if sealed) without its metric points (:meth:`series` has
        them); 404-style error naming it if absent. A sealed run's view is kept per digest."""
        seal = self._seal(run_id)
        key = (run_id, str(seal["digest"])) if seal is not None else None
        with self._lock:
            hit = self._views.get(key) if key else None
            if hit is not None and key:
                self._views.move_to_end(key)
        if hit is not None:
            # a sealed run can still be deleted, or its experiment
            deleted = self.runs.is_deleted(run_id) or self.experiment_deleted(hit.experiment_id)
            return hit if hit.deleted == deleted else dataclasses.replace(hit, deleted=deleted)
        try:
            view = dataclasses.replace(self.runs.get_run(run_id, flush=False), points=())
        except InvalidInputError as e:
            raise ObjectNotFoundError(f"no run {run_id!r} in store {self.url} (a run id is 32 hex digits)") from e
        if key and view.digest == key[1] and not view.damaged:
            with self._lock:
                self._views[key] = view
                while len(self._views) > VIEW_CACHE_RUNS:
                    self._views.popitem(last=False)
        if not view.deleted and self.experiment_deleted(view.experiment_id):
            view = dataclasses.replace(view, deleted=True)
        return view

    def family(self, view: RunView) -> tuple[RunView | None, str | None, RunPage]:
        """A run's parent (its ``mlflow.parentRunId`` tag) and its child runs, as MLflow nests
        them: the parent's view (None if it cannot be read), the parent's id, and the first
        page of the children (deleted ones too, newest first)."""
        parent_id = view.tags.get(MLFLOW_PARENT_RUN_ID) or None
        parent = None
        if parent_id:
            try:
                parent = self.run(parent_id)
            except CasstoreError:
                parent = None
        children = self.search(view.experiment_id, str(search.Comparison("tags", MLFLOW_PARENT_RUN_ID, "=", view.run_id)),
                               deleted=True)
        return parent, parent_id, children

    def run_names(self, run_ids: Sequence[str]) -> dict[str, str]:
        """The names of the runs (a run that cannot be read is left out)."""
        names = {}
        for rid in dict.fromkeys(run_ids):
            try:
                names[rid] = self.run(rid).run_name
            except CasstoreError:
                continue
        return names

    def experiment_deleted(self, experiment_id: str) -> bool:
        """Whether the experiment is deleted now (read each time: a page shows a deletion
        made by another process at once). One that cannot be read counts as active."""
        try:
            return self.runs.get_experiment(experiment_id).lifecycle_stage == "deleted"
        except CasstoreError:
            return False

    def _seal(self, run_id: str) -> dict[str, Any] | None:
        """The run's seal record, ``None`` if it is open or its seal does not verify."""
        try:
            return self.runs.seal_record(run_id) if layout.is_run_id(run_id) else None
        except CorruptRecordError:
            return None

    def experiment_name(self, experiment_id: str) -> str:
        try:
            return self.runs.get_experiment(experiment_id).name
        except CasstoreError:
            return experiment_id

    def series(self, run_id: str, key: str) -> Series:
        """One metric's history of a run (cached per run digest)."""
        run_series = self.run_series(run_id)
        s = run_series.get(key)
        if s is None:
            raise ObjectNotFoundError(f"run {run_id} has no metric {key!r}")
        return s

    def run_series(self, run_id: str) -> dict[str, Series]:
        """Every metric history of a run, by key (a sealed run's kept per run digest)."""
        seal = self._seal(run_id)
        if seal is not None:
            with self._series_lock:
                hit = self._series.get((run_id, str(seal["digest"])))
                if hit is not None:
                    self._series.move_to_end((run_id, str(seal["digest"])))
                    return hit
        try:
            digest, columns = metric_columns(self.runs, run_id, seal)
        except InvalidInputError as e:
            raise ObjectNotFoundError(f"no run {run_id!r} in store {self.url} (a run id is 32 hex digits)") from e
        built = {k: Series(run_id, k, c.steps, c.times, c.values) for k, c in columns.items()}
        if digest is None:
            return built  # an open run changes: read it each time
        points = sum(len(s) for s in built.values())
        with self._series_lock:
            self._series[(run_id, digest)] = built
            self._series_points += points
            while self._series_points > SERIES_CACHE_POINTS and len(self._series) > 1:
                _, dropped = self._series.popitem(last=False)
                self._series_points -= sum(len(s) for s in dropped.values())
        return built

    # ---- artifacts -------------------------------------------------------------------

    def artifact(self, view: RunView, path: str) -> ArtifactEntry:
        """The artifact file at ``path`` (checked: no ``..``, no absolute path)."""
        p = clean_artifact_path(path)
        entry = view.artifacts.get(p)
        if entry is None:
            raise ObjectNotFoundError(f"run {view.run_id} has no artifact file {p!r}")
        return entry

    def artifacts_under(self, view: RunView, path: str) -> list[ArtifactEntry]:
        """Every artifact file under the directory ``path`` ("" for the whole run)."""
        base = clean_optional_path(path)
        prefix = base + "/" if base else ""
        chosen = [a for p, a in sorted(view.artifacts.items()) if p.startswith(prefix)]
        if not chosen:
            raise ObjectNotFoundError(
                f"run {view.run_id} has no artifact directory {base!r}" if base else f"run {view.run_id} has no artifacts"
            )
        return chosen

    def read_artifact(self, view: RunView, entry: ArtifactEntry, limit: int) -> bytes:
        """The artifact's content, verified whole; :class:`InvalidInputError` beyond ``limit`` bytes."""
        if entry.size > limit:
            raise InvalidInputError(
                f"artifact {entry.path!r} is {entry.size} bytes, more than the {limit} a preview reads; download it instead"
            )
        return self.runs.artifact_bytes(view.run_id, entry)

    def artifact_chunks(self, view: RunView, entry: ArtifactEntry) -> Iterator[bytes]:
        """The artifact's content, each piece verified before it is yielded."""
        return self.runs.artifact_chunks(view.run_id, entry)

    # ---- compare, diff, audit --------------------------------------------------------

    def diff(self, run_a: str, run_b: str) -> dict[str, Any]:
        """What differs between two runs (``casstore diff``), plus the artifacts both hold alike."""
        from casstore.cli.audit import build_diff

        va, vb = self.run(run_a), self.run(run_b)
        d = build_diff(self.runs, run_a, run_b, (va, vb))
        d["same"] = {p: {"digest": e.digest, "size": e.size} for p, e in sorted(va.artifacts.items())
                     if p in vb.artifacts and vb.artifacts[p].digest == e.digest}
        return d

    def audit(self, run_id: str) -> dict[str, Any]:
        """What ``casstore audit`` reports for a run (reads and re-hashes every file of it)."""
        from casstore.cli.audit import build_audit

        self.run(run_id)
        return build_audit(self.runs, run_id)

    # ---- registry --------------------------------------------------------------------

    @functools.cached_property
    def registry(self) -> Any:
        from casstore.registry import Registry

        return Registry(self.runs.backend, self.runs.objects.layout)

    def logged_model(self, view: RunView, name: str) -> dict[str, Any]:
        """A model logged in a run: its reference, its model entry (flavors, signature,
        requirements, files) or the error reading it gave, and the registry versions that
        pin it."""
        from casstore.models.entry import ModelEntry

        ref = view.models.get(name)
        if ref is None:
            raise ObjectNotFoundError(f"run {view.run_id} logged no model named {name!r}")
        entry, error = None, None
        try:
            entry = ModelEntry.from_dict(self.runs.load_model_entry(ref.digest), f"model entry {ref.digest}")
        except CasstoreError as e:
            error = str(e)
        skipped: list[str] = []
        versions = [mv for m in self.registry.list_models(on_damaged=skipped.append)
                    for mv in self.registry.list_versions(m.name) if mv.model_digest == ref.digest]
        return {"ref": ref, "entry": entry, "error": error, "versions": versions, "skipped_models": skipped}

    def models(self) -> tuple[list[Any], list[str]]:
        """Every live registered model, and a sentence for each one left out because its
        records cannot be read."""
        skipped: list[str] = []
        return list(self.registry.list_models(on_damaged=skipped.append)), skipped

    def model(self, name: str) -> dict[str, Any]:
        """A registered model with its versions (deleted ones marked), alias history and
        events; each version with its model entry (signature, requirements) or the error
        reading it gave."""
        from casstore.models.entry import ModelEntry

        try:
            model = self.registry.get_model(name)
        except (ObjectNotFoundError, InvalidInputError) as e:
            raise ObjectNotFoundError(f"no registered model named {name!r} in store {self.url}") from e
        versions = []
        for v in reversed(self.registry.list_versions(name, include_deleted=True)):
            item: dict[str, Any] = {"version": v, "entry": None, "error": None}
            try:
                item["entry"] = ModelEntry.from_dict(self.runs.load_model_entry(v.model_digest),
                                                     f"model entry {v.model_digest}")
            except CasstoreError as e:
                item["error"] = str(e)
            versions.append(item)
        return {"model": model, "versions": versions, "aliases": self.registry.alias_history(name),
                "events": self.registry.history(name)}

    # ---- store -----------------------------------------------------------------------

    def _memo(self, key: str, compute: Callable[[], Any], wait: float) -> Computed:
        """The value of ``compute``, computed at most :data:`STORE_FRESH` seconds ago. One
        missing or older is computed again in a thread of its own (one at a time per
        ``key``, however many pages ask), waited for up to ``wait`` seconds: what is there
        then is returned (the older value meanwhile, or none yet). A computation that failed
        raises its error to the page that waited for it, if there is no value to show."""
        with self._lock:
            hit = self._cached.get(key)
            fresh = hit is not None and time.time() - hit[0] < STORE_FRESH
            running = self._computing.get(key)
            if not fresh and running is None:
                self._failed.pop(key, None)
                running = self._computing[key] = threading.Thread(
                    target=self._compute, args=(key, compute), name=f"casstore-ui-{key}", daemon=True)
                running.start()
        if running is not None:
            running.join(wait)
        with self._lock:
            hit = self._cached.get(key)
            pending = key in self._computing
            failed = self._failed.get(key)
        if hit is None and failed is not None:
            raise failed
        return Computed(hit[1] if hit else None, hit[0] if hit else None, pending)

    def _compute(self, key: str, compute: Callable[[], Any]) -> None:
        started = time.time()
        try:
            value = compute()
        except BaseException as e:  # shown by the next page that asks (see _memo)
            with self._lock:
                self._failed[key] = e
                del self._computing[key]
            return
        with self._lock:
            self._cached[key] = (started, value)
            del self._computing[key]

    def store_figures(self, wait: float | None = None) -> tuple[Computed, Computed]:
        """:meth:`usage` and :meth:`gc_dry_run`, computed side by side, waited for up to
        ``wait`` seconds in all (:data:`STORE_WAIT` unless given)."""
        deadline = time.monotonic() + (STORE_WAIT if wait is None else wait)
        self.usage(0.0)
        self.gc_dry_run(0.0)
        return self.usage(max(0.0, deadline - time.monotonic())), self.gc_dry_run(max(0.0, deadline - time.monotonic()))

    def usage(self, wait: float = 0.0) -> Computed:
        """``casstore du`` of the store (see :meth:`_memo`)."""
        from casstore.maintenance.du import disk_usage

        return self._memo("du", lambda: disk_usage(self.runs, top=10).to_dict(), wait)

    def gc_dry_run(self, wait: float = 0.0) -> Computed:
        """What ``casstore gc --dry-run`` reports (see :meth:`_memo`); writes nothing."""
        from casstore.maintenance.gc import collect_garbage

        return self._memo("gc", lambda: collect_garbage(self.runs.backend, dry_run=True).to_dict(), wait)

    def start_verify(self, run_id: str | None) -> Job:
        """Start verifying the store (``run_id`` None) or one run, in a thread; a verify of
        the same scope still running is returned instead of starting another."""
        if run_id is not None:
            self.run(run_id)
        with self._lock:
            for job in self._jobs.values():
                if job.finished is None and job.run_id == run_id:
                    return job
            job = Job(uuid.uuid4().hex, f"run {run_id}" if run_id else "the whole store", run_id, time.time())
            self._jobs[job.id] = job
            while len(self._jobs) > 50:
                self._jobs.popitem(last=False)
        threading.Thread(target=self._verify, args=(job,), name="casstore-ui-verify", daemon=True).start()
        return job

    def _verify(self, job: Job) -> None:
        from casstore.maintenance.verify import verify_store

        def progress(stage: str, advance: int, total: int | None) -> None:
            if stage != job.stage:
                job.stage, job.done, job.total = stage, 0, None
            job.done += advance
            if total is not None:
                job.total = total

        try:
            report = verify_store(self.runs, None if job.run_id is None else [job.run_id], progress=progress)
            job.result = report.to_dict()
        except Exception as e:  # noqa: BLE001 - reported on the page, the server goes on
            job.error = f"{type(e).__name__}: {e}"
        job.stage = "done"
        job.finished = time.time()

    def jobs(self) -> list[Job]:
        """The verifications this server started, newest first."""
        return list(self._jobs.values())[::-1]

    def job(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise ObjectNotFoundError(f"no verification {job_id!r} on this server (it keeps the last 50 until it stops)")
        return job
