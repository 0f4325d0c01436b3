"""Space accounting: what runs reference (logical bytes) against what is stored (physical).

Logical bytes count every artifact a run binds at its full size, as a plain copy
per run would store it. Physical bytes count each distinct chunk once. A run's
*unique* bytes are the distinct chunks it references; its *exclusive* bytes are the
chunks no other live run or registry version references, which is what deleting the
run (and collecting garbage) would give back. A small artifact held in its own binding
record (``inline``, version-3 stores) belongs to its run alone: it counts in the run's
logical and unique bytes, and in physical bytes, but not in exclusive ones, since a
deleted run keeps its records (deletion is recorded, not erased).
"""

from __future__ import annotations

import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from casstore.exceptions import CasstoreError, DamagedRunWarning
from casstore.maintenance.scan import read_many, recipe_chunks

if TYPE_CHECKING:
    from casstore.runs import RunStore

__all__ = ["RunUsage", "GroupUsage", "DuReport", "disk_usage"]

Progress = Callable[[str, int, int | None], None]
REGISTRY_OWNER = "registry"


@dataclass
class RunUsage:
    run_id: str
    run_name: str
    experiment_id: str
    files: int
    logical: int
    unique: int
    exclusive: int

    @property
    def ratio(self) -> float:
        return self.logical / self.unique if self.unique else 1.0


@dataclass
class GroupUsage:
    """Totals over a set of runs (an experiment, or the selection)."""

    name: str
    experiment_id: str
    runs: int
    logical: int
    physical: int

    @property
    def ratio(self) -> float:
        return self.logical / self.physical if self.physical else 1.0


@dataclass
class DuReport:
    total: GroupUsage
    experiments: list[GroupUsage] = field(default_factory=list)
    runs: list[RunUsage] = field(default_factory=list)
    top_files: list[dict[str, Any]] = field(default_factory=list)
    top_chunks: list[dict[str, Any]] = field(default_factory=list)
    store: dict[str, int] = field(default_factory=dict)
    unreadable_runs: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        def group(g: GroupUsage) -> dict[str, Any]:
            return {**asdict(g), "dedup_ratio": round(g.ratio, 4)}

        return {
            "total": group(self.total),
            "experiments": [group(g) for g in self.experiments],
            "runs": [{**asdict(r), "dedup_ratio": round(r.ratio, 4)} for r in self.runs],
            "top_files": self.top_files,
            "top_chunks": self.top_chunks,
            "store": dict(self.store),
            "unreadable_runs": list(self.unreadable_runs),
            "seconds": round(self.seconds, 3),
        }


def _most_saved(counts: Counter[str], size: Mapping[str, int], top: int) -> list[tuple[str, int]]:
    """The ``top`` digests counted more than once with their counts, most bytes saved by
    sharing first (``(count - 1) * size``), then by digest."""
    shared = ((d, n) for d, n in counts.items() if n > 1)
    return sorted(shared, key=lambda dn: (-(dn[1] - 1) * size[dn[0]], dn[0]))[:top]


def disk_usage(
    runs: RunStore,
    run_ids: Sequence[str] | None = None,
    *,
    top: int = 10,
    progress: Progress | None = None,
) -> DuReport:
    """Account for the space of the given runs (every live run if ``None``).

    Exclusive bytes are always computed against every live run and registry version of
    the store, so they say what deleting a run would really reclaim.
    """
    t0 = time.perf_counter()

    def tick(stage: str, advance: int = 0, total: int | None = None) -> None:
        if progress:
            progress(stage, advance, total)

    backend = runs.backend
    layout = runs.objects.layout
    tick("listing")
    ids = sorted(set(runs.list_run_ids()) | set(run_ids or ()))

    # list the stored chunks meanwhile (it waits on the disk or the network, not the CPU)
    lister = ThreadPoolExecutor(1, thread_name_prefix="casstore-du-list")
    objects = runs.objects
    # every stored chunk: loose, and in a packs store in packs too
    chunk_listing = lister.submit(lambda: list(objects.iter_chunks()))

    def chunk_size(d: str) -> int:
        loc = objects.packs.get(d) if objects.packs is not None else None
        return loc.length if loc is not None else backend.info(layout.chunk_key(d)).size

    lister.shutdown(wait=False)

    # every live run's bindings: needed for exclusivity even when only some are shown
    bindings: dict[str, dict[str, tuple[str, int]]] = {}
    inline: dict[str, int] = {}  # run -> bytes of its artifacts held in their records
    inline_files: dict[str, int] = {}
    names: dict[str, tuple[str, str]] = {}
    unreadable: list[str] = []
    deleted_runs = 0
    tick("reading runs", 0, len(ids))
    for run_id, view in _views(runs, ids):
        tick("reading runs", 1)
        if view is None:
            unreadable.append(run_id)
        elif view.deleted:
            deleted_runs += 1
        else:
            bindings[run_id] = {p: (a.digest, a.size) for p, a in view.artifacts.items() if not a.inline}
            inline[run_id] = sum(a.size for a in view.artifacts.values() if a.inline)
            inline_files[run_id] = sum(1 for a in view.artifacts.values() if a.inline)
            names[run_id] = (view.run_name, view.experiment_id)
    selected = set(bindings) if run_ids is None else set(run_ids)

    # registry versions keep their model's files alive even without their run
    registry_files = _registry_files(runs)

    # recipes of every bound file: which chunks, how long. A file no longer than the
    # chunker's minimum is one chunk, named like the file: no recipe needs reading. A file
    # with no recipe whose chunk is stored is that chunk (version 2 stores such files so).
    sizes = {d: size for b in bindings.values() for d, size in b.values()}
    all_files = set(sizes) | registry_files
    small = runs.objects.config.chunker.min_size
    file_chunks: dict[str, list[tuple[str, int]]] = {
        d: [(d, sizes[d])] for d in all_files if 0 < sizes.get(d, 0) <= small
    }
    ordered = sorted(all_files - set(file_chunks))
    tick("reading recipes", 0, len(ordered))
    keys = [layout.recipe_key(d) for d in ordered]
    no_recipe = []
    for d, (key, data) in zip(ordered, read_many(backend, keys, lambda n: tick("reading recipes", n))):
        if data is not None:
            file_chunks[d] = recipe_chunks(data, f"recipe {key}")
        else:
            no_recipe.append(d)
    if no_recipe:
        stored_set = set(chunk_listing.result())
        for d in no_recipe:
            if d in stored_set:
                n = sizes.get(d)
                if n is None:  # a file of a registered model only: its chunk says how long
                    try:
                        n = chunk_size(d)
                    except CasstoreError:
                        continue
                file_chunks[d] = [(d, n)]

    chunk_len: dict[str, int] = {}
    for chunks in file_chunks.values():
        for c, n in chunks:
            chunk_len[c] = n
    # owners of each chunk: live runs and the registry
    owners: dict[str, set[str]] = defaultdict(set)
    run_chunks: dict[str, set[str]] = {}
    for run_id, b in bindings.items():
        cs = {c for d, _ in b.values() for c, _n in file_chunks.get(d, ())}
        run_chunks[run_id] = cs
        for c in cs:
            owners[c].add(run_id)
    for d in registry_files:
        for c, _n in file_chunks.get(d, ()):
            owners[c].add(REGISTRY_OWNER)

    usages = []
    for run_id in sorted(selected & set(bindings)):
        cs = run_chunks[run_id]
        usages.append(RunUsage(
            run_id=run_id,
            run_name=names[run_id][0],
            experiment_id=names[run_id][1],
            files=len(bindings[run_id]) + inline_files[run_id],
            logical=sum(size for _d, size in bindings[run_id].values()) + inline[run_id],
            unique=sum(chunk_len[c] for c in cs) + inline[run_id],
            exclusive=sum(chunk_len[c] for c in cs if owners[c] == {run_id}),
        ))

    by_exp: dict[str, list[RunUsage]] = defaultdict(list)
    for u in usages:
        by_exp[u.experiment_id].append(u)
    exp_names = _experiment_names(runs)
    experiments = []
    for exp_id, us in sorted(by_exp.items(), key=lambda kv: exp_names.get(kv[0], kv[0])):
        cs = set().union(*(run_chunks[u.run_id] for u in us))
        experiments.append(GroupUsage(exp_names.get(exp_id, exp_id), exp_id, len(us), sum(u.logical for u in us),
                                      sum(chunk_len[c] for c in cs) + sum(inline[u.run_id] for u in us)))
    sel_chunks = set().union(*(run_chunks[u.run_id] for u in usages)) if usages else set()
    total = GroupUsage("total", "", len(usages), sum(u.logical for u in usages),
                       sum(chunk_len[c] for c in sel_chunks) + sum(inline[u.run_id] for u in usages))

    # what is shared most within the selection
    file_refs: Counter[str] = Counter()
    file_runs: dict[str, set[str]] = defaultdict(set)
    file_size: dict[str, int] = {}
    file_path: dict[str, str] = {}
    for u in usages:
        for path, (d, size) in sorted(bindings[u.run_id].items()):
            file_refs[d] += 1
            file_runs[d].add(u.run_id)
            file_size[d] = size
            file_path.setdefault(d, path)
    top_files = [{"digest": d, "size": file_size[d], "bindings": n, "runs": len(file_runs[d]), "path": file_path[d],
                  "saved": (n - 1) * file_size[d]} for d, n in _most_saved(file_refs, file_size, top)]
    chunk_files: Counter[str] = Counter()
    for d in file_refs:
        for c in {c for c, _n in file_chunks.get(d, ())}:
            chunk_files[c] += 1
    top_chunks = [{"digest": c, "size": chunk_len[c], "files": n, "runs": len(owners[c] - {REGISTRY_OWNER}),
                   "saved": (n - 1) * chunk_len[c]} for c, n in _most_saved(chunk_files, chunk_len, top)]

    # the store as a whole: what is stored, and what no live run or registry version needs
    tick("measuring the store")
    stored_chunks = chunk_listing.result()
    tick("measuring the store", 0, len(stored_chunks))
    stored = 0
    for c in stored_chunks:
        tick("measuring the store", 1)
        n = chunk_len.get(c)
        if n is None:
            try:
                n = chunk_size(c)
            except CasstoreError:
                n = 0
        stored += n
    present = set(stored_chunks)
    referenced = sum(chunk_len[c] for c in owners if c in present)
    store = {
        "chunks": len(stored_chunks),
        "models": sum(1 for _ in layout.stored(backend, "models")),
        "runs": len(ids),
        "deleted_runs": deleted_runs,
        "stored_bytes": stored,
        "referenced_bytes": referenced,
        "unreferenced_bytes": stored - referenced,
        "logical_bytes": sum(size for b in bindings.values() for _d, size in b.values()) + sum(inline.values()),
        "inline_bytes": sum(inline.values()),
    }
    return DuReport(total, experiments, usages, top_files, top_chunks, store, unreadable, time.perf_counter() - t0)


def _views(runs: RunStore, ids: Sequence[str]) -> Iterator[tuple[str, Any]]:
    """``(run_id, view or None)`` for each run, read by a few threads (reads release the GIL)."""

    def one(run_id: str) -> tuple[str, Any, Exception | None]:
        try:
            return run_id, runs.get_run(run_id, warn=False), None
        except CasstoreError as e:
            return run_id, None, e

    with ThreadPoolExecutor(max(2, runs.backend.concurrency), thread_name_prefix="casstore-du") as pool:
        for run_id, view, error in pool.map(one, ids):
            if error is not None:
                warnings.warn(DamagedRunWarning(f"run {run_id} is skipped: it cannot be read ({error})"), stacklevel=3)
            elif view.damaged:
                warnings.warn(DamagedRunWarning(
                    f"run {run_id} is counted without {len(view.damaged)} record(s) that failed their checks: "
                    + "; ".join(d.describe() for d in view.damaged[:3])), stacklevel=3)
            yield run_id, view


def _registry_files(runs: RunStore) -> set[str]:
    """Digests of the files of every model a live registry version pins."""
    try:
        from casstore.registry import Registry
    except ImportError:  # pragma: no cover
        return set()
    reg = Registry(runs.backend, runs.objects.layout)
    out: set[str] = set()
    try:
        digests = {mv.model_digest for m in reg.list_models() for mv in reg.list_versions(m.name)}
    except CasstoreError:
        return out
    for d in digests:
        try:
            entry = runs.load_model_entry(d)
        except CasstoreError:
            continue
        files = entry.get("files")
        if isinstance(files, dict):
            out.update(f["digest"] for f in files.values() if isinstance(f, dict) and isinstance(f.get("digest"), str))
    return out


def _experiment_names(runs: RunStore) -> dict[str, str]:
    try:
        return {e.experiment_id: e.name for e in runs.list_experiments()}
    except CasstoreError:
        return {}
