"""Garbage collection: two-phase mark and sweep that is safe beside running writers.

A gc run does, in order (see docs/design.md, "Garbage collection", for the argument):

1. reads the store's clock (the mtime of a probe object), so every time below is
   compared with object times in one clock;
2. finishes what stopped gc runs left undecided (an object renamed aside for deletion:
   put back if a writer reused it since, else removed) and removes temporary files of
   killed writers older than the grace period (at least an hour);
3. lists the store and reads every root record: the reference records and manifests
   of every run without a ``deleted`` marker, every registry record, and records under
   prefixes it does not know;
4. **sweeps** the candidates of earlier runs whose grace period is over, counted from
   when each record was written (its mtime, the store's clock): an object listed in a
   candidates record marked at ``T`` is deleted only if it is still unreachable now,
   nothing kept refers to it, and it was neither created nor freshened since ``T``
   (mtime before ``T - CLOCK_SLACK``). Deletion goes through
   :meth:`Backend.delete_if_stale`, which re-checks the mtime at the last moment
   (exactly, on backends with ``exact_stale_delete``); referrers go first (models,
   then file recipes, then chunks) so a recipe kept at the last moment keeps its chunks;
   in a packs store the packs follow, then the index objects naming a deleted pack are
   replaced, and only then are the swept candidates records removed (a writer of a packs
   store checks the marks it can list instead of freshening every pack it reuses, see
   :class:`~casstore.objects.packs.PackWriter`);
5. **marks** everything unreachable now in a new candidates record
   ``gc/candidates/<stamp>`` with the time of step 1;
6. records the run in ``gc/log/<stamp>``.

So an object is removed only by a second gc run, at least ``grace`` after the first
saw it unreferenced, and only if no writer touched it in between.

A referenced file digest keeps an object of that name of any kind, so a file stored
as one chunk without a recipe (version-2 stores) keeps that chunk. Object keys come
from the store's layout, read from its config (gc refuses a store it cannot read).
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from casstore.backend.base import Backend
from casstore.exceptions import CasstoreError, CorruptRecordError, InvalidInputError, ObjectNotFoundError, RunStateError
from casstore.maintenance.scan import (
    CONTENT_KINDS,
    Blocker,
    closure,
    read_many,
    read_roots,
    recipe_chunks,
    digests_in,
    prove_open_runs,
    scan_store,
)
from casstore.objects.codec import pack, unpack
from casstore.objects.config import read_config
from casstore.objects.digest import is_digest
from casstore.objects.layout import PACKS, ContentLayout
from casstore.objects.layout import CANDIDATES_PREFIX

__all__ = ["DEFAULT_GRACE", "CLOCK_SLACK", "GcReport", "collect_garbage", "parse_duration", "format_duration"]

#: objects created or re-referenced within this many seconds are never removed
DEFAULT_GRACE = 24 * 3600.0
#: margin for timestamp granularity and small clock steps (S3 keeps whole seconds)
CLOCK_SLACK = 1.0
#: temporary files younger than this are never removed, whatever the grace period
MIN_TMP_AGE = 3600.0

LOG_PREFIX = "gc/log/"
CLOCK_PREFIX = "gc/clock/"
RECORD_VERSION = 1

Progress = Callable[[str, int, int | None], None]
"""``progress(stage, advance, total)``: a stage starts with ``advance=0`` and its total."""

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``24h``, ``30m``, ``1h30m``, ``2d`` or ``0s``. A number
    needs its unit (``0`` alone excepted): ``24`` could mean hours as well as seconds, and
    taken for seconds it would let gc delete what a day's grace protects.

    >>> parse_duration("1h30m")
    5400.0
    """
    s = str(text).strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(?:\.\d+)?", s):
        if float(s) == 0:
            return 0.0
        raise InvalidInputError(
            f"{text!r} has no unit: write {s}h for hours, {s}m for minutes, {s}d for days or {s}s for seconds"
        )
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not s or pos != len(s):
        raise InvalidInputError(
            f"{text!r} is not a duration: use a number with a unit, such as 24h, 30m, 1h30m, 7d or 0s"
        )
    return total


def format_duration(seconds: float) -> str:
    """A short human form: ``1d2h``, ``30m``, ``0s``."""
    s = int(round(seconds))
    if s <= 0:
        return "0s"
    out = []
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= n:
            out.append(f"{s // n}{unit}")
            s %= n
    return "".join(out[:2])


@dataclass
class GcReport:
    """What a gc run found and did. Sizes are in bytes, times in epoch seconds (store clock)."""

    dry_run: bool
    grace: float
    started: float
    objects: dict[str, int] = field(default_factory=dict)  # kind -> present at the scan
    runs: int = 0
    deleted_runs: int = 0
    deleted: dict[str, int] = field(default_factory=lambda: {k: 0 for k in CONTENT_KINDS})
    deleted_bytes: int = 0
    kept_fresh: int = 0  # due candidates kept: created, freshened or referenced since marked
    marked: dict[str, int] = field(default_factory=lambda: {k: 0 for k in CONTENT_KINDS})
    marked_bytes: int = 0
    pending_records: int = 0  # candidates records whose grace period is not over
    next_sweep: float | None = None  # when the earliest pending record becomes due
    tmp_removed: int = 0
    #: packs (a store of the packs layout): present, live fraction, repacked, deleted
    packs: int = 0
    pack_live_fraction: float | None = None
    repacked: int = 0
    packs_deleted: int = 0
    packs_kept_fresh: int = 0
    indexes_rewritten: int = 0
    #: small index objects folded into fewer (``packgc.fold_indexes``), and how many those are
    indexes_folded: int = 0
    indexes_written: int = 0
    exact: bool = False  # the backend's stale delete is exact (no race window at all)
    #: live references that could not be read or proven: while there is any, nothing is deleted or marked
    blocked: list[dict[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every live reference was proven (a blocked run deletes nothing)."""
        return not self.blocked

    @property
    def deleted_total(self) -> int:
        """Objects deleted: chunks, files, model entries and (a store of the packs layout) packs."""
        return sum(self.deleted.values()) + self.packs_deleted

    @property
    def kept_total(self) -> int:
        """Marked objects kept because a writer reused or referenced them since (packs included)."""
        return self.kept_fresh + self.packs_kept_fresh

    @property
    def marked_total(self) -> int:
        """Objects marked, packs included (``marked["packs"]``, a store of the packs layout)."""
        return sum(self.marked.values())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["deleted_total"] = self.deleted_total
        d["marked_total"] = self.marked_total
        d["kept_total"] = self.kept_total
        return d


@dataclass
class _Candidates:
    key: str
    marked_at: float
    digests: dict[str, list[str]]
    #: when the record was written, by the store's clock (its mtime): its grace counts from then
    written_at: float


def _stamp() -> str:
    return f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def store_clock(backend: Backend) -> float:
    """The store's current time: the mtime the backend gives a probe object just written."""
    key = CLOCK_PREFIX + _stamp()
    backend.put_blob(key, b"")
    try:
        t = backend.info(key).mtime
    finally:
        backend.delete(key)
    return t if t > 0 else time.time()


def _load_candidates(backend: Backend) -> list[_Candidates]:
    out = []
    keys = sorted(backend.list(CANDIDATES_PREFIX))
    for key, data in read_many(backend, keys):
        if data is None:
            continue
        try:
            written = backend.info(key).mtime
        except ObjectNotFoundError:
            continue
        try:
            rec = unpack(data, key)
            marked = float(rec["marked_at"])
            digests = {k: [d for d in rec["candidates"].get(k, []) if is_digest(d)] for k in (*CONTENT_KINDS, PACKS)}
        except (CorruptRecordError, KeyError, TypeError, ValueError, AttributeError):
            # a damaged candidates record only delays collection: drop it, the next run re-marks
            out.append(_Candidates(key, float("inf"), {k: [] for k in (*CONTENT_KINDS, PACKS)}, float("inf")))
            continue
        out.append(_Candidates(key, marked, digests, written))
    return out


def collect_garbage(
    backend: Backend,
    *,
    grace: float = DEFAULT_GRACE,
    dry_run: bool = False,
    slack: float = CLOCK_SLACK,
    progress: Progress | None = None,
    no_writers: bool = False,
) -> GcReport:
    """Run one gc pass over the store on ``backend`` (see the module docstring).

    With ``dry_run`` nothing is written or deleted: the report says what a real run
    would delete now and mark for later. ``slack`` widens the freshness check against
    timestamp granularity and clock steps.

    ``no_writers`` is the caller's promise that no one writes to the store while this
    runs: what is unreferenced now (and proven so) is deleted in this one run, without a
    mark and a grace period; only objects touched in the last ``slack`` seconds stay. gc
    refuses (:class:`RunStateError`) when it sees a writer: a live metric log of this
    machine (a process logging to the store holds one).
    """
    if grace < 0 or slack < 0:
        raise InvalidInputError(f"the grace period and slack must not be negative, got {grace}s and {slack}s")

    def tick(stage: str, advance: int = 0, total: int | None = None) -> None:
        if progress:
            progress(stage, advance, total)

    layout = read_config(backend).layout
    if no_writers:
        refuse_if_writing(backend, "gc --no-writers", "nothing was deleted. Run gc without --no-writers (safe beside "
                          "writers), or once they have ended.")
    now = time.time() if dry_run else store_clock(backend)
    report = GcReport(dry_run=dry_run, grace=grace, started=now, exact=bool(getattr(backend, "exact_stale_delete", False)))
    if not dry_run:
        # first: a delete a stopped gc left undecided is finished (an object a writer reused
        # since is put back) before the listing, which would take it for missing
        tick("cleaning temporary files")
        report.tmp_removed = backend.clean_tmp(now - max(grace, MIN_TMP_AGE))

    tick("listing")
    records = _load_candidates(backend)
    # a record's grace counts from when it was written (not from its mark time, which is
    # before the scan): a writer checks the marks it can list (docs/design.md, "Garbage collection")
    due = [r for r in records if r.written_at + grace <= now]
    pending = [r for r in records if r not in due]
    report.pending_records = len(pending)
    if pending:
        report.next_sweep = min(r.written_at for r in pending) + grace
    scan = scan_store(backend, layout)
    present = scan.content
    report.objects = {k: len(v) for k, v in present.items()}
    report.runs = len(scan.runs)
    report.deleted_runs = len(scan.deleted_runs())

    # registry records are read through the registry (a deleted version pins nothing)
    roots_keys = [k for k in scan.root_keys() if not k.startswith("registry/")]
    tick("reading roots", 0, len(roots_keys))
    found = read_roots(backend, roots_keys, lambda n: tick("reading roots", n))
    prove_open_runs(backend, scan, found)
    try:
        found.models.update(registry_pins(backend))
    except CasstoreError as e:
        found.blockers.append(Blocker("registry/", str(e), "the registry"))
    roots = found.digests | set(found.models)
    pindex = None
    stale_indexes: set[str] = set()
    packed_chunks: set[str] = set()
    if layout.packed:
        from casstore.maintenance import packgc

        tick("reading pack indexes")
        pindex, stale_indexes = packgc.load_packs(backend, layout)
        packed_chunks = set(pindex.chunks())
        report.packs = len(scan.packs)
    # references are traced (and proven) against every stored chunk, loose or in a pack
    stored = {**present, "chunks": present["chunks"] | packed_chunks}
    tick("tracing references")
    live = closure(backend, layout, stored, roots, prove=found)
    live["chunks"] &= present["chunks"]  # loose chunks go by the sweep below; packs whole, further down
    report.blocked = [b.to_dict() for b in found.blockers]
    if report.blocked:
        # a reference that cannot be read may reach any object: delete nothing, mark nothing
        if not dry_run:
            backend.put_if_absent(LOG_PREFIX + _stamp(), pack({"v": RECORD_VERSION, **report.to_dict()}))
        return report
    if no_writers:  # promised: nothing unreferenced now is about to be referenced
        due = [*due, _Candidates("", now, {kind: sorted(present[kind] - live[kind]) for kind in CONTENT_KINDS}, now)]

    # ---- sweep: candidates of earlier runs whose grace period is over --------------------
    threshold: dict[tuple[str, str], float] = {}
    for rec in due:
        for kind, digests in rec.digests.items():
            for d in digests:
                k = (kind, d)
                threshold[k] = min(threshold.get(k, rec.marked_at), rec.marked_at)
    sweep = {kind: {d for (k, d) in threshold if k == kind and d in present[kind] and d not in live[kind]}
             for kind in CONTENT_KINDS}
    if any(sweep.values()):
        # whatever is not swept stays, and so does everything it refers to
        others = {kind: present[kind] - sweep[kind] for kind in ("models", "files")}
        keep = closure(backend, layout, present, roots, seed_objects=others)
        gone: dict[str, set[str]] = {kind: set() for kind in CONTENT_KINDS}
        total = sum(len(v) for v in sweep.values())
        tick("deleting", 0, total)
        for kind in CONTENT_KINDS:
            todo = sorted(sweep[kind] - keep[kind])
            report.kept_fresh += len(sweep[kind]) - len(todo)
            kept_now: list[str] = []
            for d in todo:
                key = layout.key(kind, d)
                limit = threshold[(kind, d)] - slack
                tick("deleting", 1)
                try:
                    info = backend.info(key)
                except ObjectNotFoundError:
                    continue
                if info.mtime >= limit:
                    kept_now.append(d)
                    continue
                if dry_run:
                    gone[kind].add(d)
                    report.deleted[kind] += 1
                    report.deleted_bytes += info.size
                    continue
                if backend.delete_if_stale(key, limit):
                    gone[kind].add(d)
                    report.deleted[kind] += 1
                    report.deleted_bytes += info.size
                else:
                    kept_now.append(d)
            report.kept_fresh += len(kept_now)
            if kept_now and kind != "chunks":
                # touched at the last moment: what it refers to must stay as well
                _keep_references(backend, layout, kind, kept_now, keep)
        for kind in CONTENT_KINDS:
            present[kind] -= gone[kind]
    if not dry_run:
        # a similarity hint whose file is gone leads nowhere; hints are guesses, so one
        # dropped wrongly (its file stored since the listing) costs a later put only time
        for key in scan.hints:
            hint = layout.parse_hint(key)
            if hint is None or hint[2] not in present["files"]:
                backend.delete(key)

    pack_live: set[str] = set()
    if pindex is not None:
        # a chunk in a pack counts as live while any stored recipe or model entry names it:
        # those this run swept no longer do, so the packs only they used are marked now
        pack_live = closure(
            backend, layout, {**present, "chunks": present["chunks"] | packed_chunks}, roots,
            seed_objects={"models": present["models"], "files": present["files"]},
        )["chunks"]

    marked_packs: list[str] = []
    if pindex is not None:
        from casstore.maintenance import packgc

        due_packs: dict[str, float] = {}
        for rec in due:
            for d in rec.digests.get(PACKS, []):
                due_packs[d] = min(due_packs.get(d, rec.marked_at), rec.marked_at)
        if no_writers:
            # promised: the recipes and model entries swept above free their chunks now, and a
            # pack none of whose chunks anything stored still names goes in this run too
            pack_live = closure(backend, layout, {**present, "chunks": present["chunks"] | packed_chunks}, roots,
                                seed_objects={"models": present["models"], "files": present["files"]})["chunks"]
            for p in packgc.plan_packs(pindex, pack_live, scan.packs).dead:
                due_packs[p] = now
        gone_packs: set[str] = set()
        if due_packs:
            tick("deleting packs")
            gone_packs, freed, kept = packgc.sweep_packs(backend, layout, pindex, due_packs, pack_live, slack, dry_run)
            report.packs_deleted, report.packs_kept_fresh = len(gone_packs), kept
            report.deleted_bytes += freed
        if not dry_run and (gone_packs or stale_indexes):
            # every index object that lists a pack gone (deleted now, or by a gc stopped before
            # this step) is replaced before the records that marked the packs go: a writer that
            # lists neither the mark nor the index does not reuse the pack
            report.indexes_rewritten = packgc.rewrite_indexes(backend, pindex, gone_packs, stale_indexes)
            for p in gone_packs:
                pindex.forget_pack(p)
        if not dry_run and not report.indexes_rewritten:
            report.indexes_folded, report.indexes_written = packgc.fold_indexes(backend, pindex)
        plan = packgc.plan_packs(pindex, pack_live, scan.packs - gone_packs)
        report.pack_live_fraction = plan.live_bytes / plan.total_bytes if plan.total_bytes else None
        marked_packs = list(plan.dead)
        if plan.repack and not dry_run:
            tick("repacking")
            moved = packgc.repack(backend, layout, pindex, plan.repack, pack_live)
            report.repacked = len(moved)
            marked_packs += moved

    if not dry_run:
        for rec in due:
            if rec.key:
                backend.delete(rec.key)

    # ---- mark: everything unreachable now, for a later run --------------------------------
    marked = {kind: sorted(present[kind] - live[kind]) for kind in CONTENT_KINDS}
    report.marked = {k: len(v) for k, v in marked.items()}
    if marked_packs:
        marked[PACKS] = sorted(marked_packs)
        report.marked[PACKS] = len(marked_packs)
    if any(marked.values()):
        keys = [layout.key(kind, d) for kind in marked for d in marked[kind]]
        tick("measuring garbage", 0, len(keys))
        for key in keys:
            tick("measuring garbage", 1)
            try:
                report.marked_bytes += backend.info(key).size
            except ObjectNotFoundError:
                pass
        if not dry_run:
            backend.put_if_absent(
                CANDIDATES_PREFIX + _stamp(),
                pack({"v": RECORD_VERSION, "marked_at": now, "grace": grace, "candidates": marked}),
            )
            if report.next_sweep is None:
                report.next_sweep = now + grace

    if not dry_run:
        backend.put_if_absent(LOG_PREFIX + _stamp(), pack({"v": RECORD_VERSION, **report.to_dict()}))
    return report


def refuse_if_writing(backend: Backend, what: str, then: str) -> None:
    """For what must run with no writer (``gc --no-writers``, ``upgrade``): raise
    :class:`RunStateError` (``what``: the writer seen; ``then``) if a writer is seen: a
    live metric log (of this machine, for a remote store)."""
    from casstore.runs.wal import wal_dir_for

    wal = wal_dir_for(backend)
    live = wal.live() if wal is not None else []
    if live:
        raise RunStateError(
            f"{what}: a writer is active on this store (it holds the metric log {live[0]}, run "
            f"{live[0].split('/')[0]}{f' and {len(live) - 1} more' if len(live) > 1 else ''}); {then}"
        )


def registry_pins(backend: Backend) -> dict[str, str]:
    """Model digests pinned by live registry versions, each with the version that pins it.
    A registry that cannot be read raises (:class:`CasstoreError`): gc must then keep
    everything, since any record it could not read may pin any model."""
    from casstore.registry import Registry

    reg = Registry(backend)
    return {mv.model_digest: f"registered model {m.name!r} version {mv.version}"
            for m in reg.list_models() for mv in reg.list_versions(m.name)}


def _keep_references(
    backend: Backend, layout: ContentLayout, kind: str, digests: list[str], keep: dict[str, set[str]]
) -> None:
    """Add what the kept model entries or recipes refer to to ``keep``."""
    for key, data in read_many(backend, [layout.key(kind, d) for d in digests]):
        if data is None:
            continue
        if kind == "models":
            for d in digests_in(data):
                for k in CONTENT_KINDS:
                    keep[k].add(d)
            # a kept model's files keep their chunks
            files = [d for d in digests_in(data)]
            _keep_references(backend, layout, "files", files, keep)
        else:
            for d, _n in recipe_chunks(data, f"recipe {key}"):
                keep["chunks"].add(d)
