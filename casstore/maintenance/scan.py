"""Reading the store's layout for maintenance: content objects, runs, and what they reference.

Garbage collection must never under-count a reference, so the reference scan here
is deliberately format-agnostic: every 64-hex BLAKE3 digest that appears anywhere in
a root record (an artifact record, a model record, a manifest, a registry record, or
a record under a prefix this version does not know) keeps any chunk, file or model
entry of that name. Over-counting (a tag value that happens to look like a digest)
only keeps a few more bytes; under-counting would lose data. That rule also keeps a
file stored as one chunk without a recipe (version-2 stores): its digest names the
chunk that is the file.

Content objects are found and named through the store's
:class:`~casstore.objects.ContentLayout` (the fan-out depends on the format version).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from casstore.backend.base import Backend
from casstore.exceptions import CorruptRecordError, ObjectNotFoundError
from casstore.objects.layout import CONTENT_KINDS, HINTS, ContentLayout
from casstore.objects.recipes import Recipe

__all__ = [
    "CONTENT_KINDS",
    "DIGEST_BYTES_RE",
    "RunKeys",
    "StoreScan",
    "closure",
    "digests_in",
    "list_content",
    "read_many",
    "recipe_chunks",
    "root_digests",
    "scan_store",
]

#: a 64-hex digest inside raw record bytes (msgpack stores str as plain UTF-8)
DIGEST_BYTES_RE = re.compile(rb"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")

# top-level prefixes that hold no references to content
_NON_ROOT_PREFIXES = ("chunks", "files", "models", "gc", "experiments", "casstore.json", "index")
# per-run record kinds that hold no references to content (values are user strings or numbers);
# a seal of version 4 holds the run's manifest, so seals are read as roots
_RUN_KINDS_WITHOUT_REFS = frozenset({"meta", "params", "tags", "metrics", "deleted", "dirs"})
#: version 4's batch records (``batch-<n>``): params, tags and metric points, no references
_BATCH_KIND = "batch-"

Progress = Callable[[int], None]


def digests_in(data: bytes) -> set[str]:
    """Every 64-hex digest that appears in ``data`` (a record's raw bytes)."""
    return {m.decode("ascii") for m in DIGEST_BYTES_RE.findall(data)}


def read_many(backend: Backend, keys: Sequence[str], progress: Progress | None = None) -> Iterator[tuple[str, bytes | None]]:
    """``(key, bytes)`` for each key, concurrently on remote stores; ``None`` for a key that
    vanished between listing and reading."""

    def one(key: str) -> tuple[str, bytes | None]:
        try:
            return key, backend.get(key)
        except ObjectNotFoundError:
            return key, None

    if backend.concurrency <= 1 or len(keys) <= 1:
        for k in keys:
            item = one(k)
            if progress:
                progress(1)
            yield item
        return
    with ThreadPoolExecutor(backend.concurrency, thread_name_prefix="casstore-scan") as pool:
        for item in pool.map(one, keys):
            if progress:
                progress(1)
            yield item


@dataclass
class RunKeys:
    """The keys stored under ``runs/<run_id>/``, grouped by record kind."""

    run_id: str
    by_kind: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    @property
    def deleted(self) -> bool:
        return "deleted" in self.by_kind

    @property
    def sealed(self) -> bool:
        return "seal" in self.by_kind

    def reference_keys(self) -> list[str]:
        """Keys of this run's records that may reference content."""
        return [k for kind, keys in self.by_kind.items()
                if kind not in _RUN_KINDS_WITHOUT_REFS and not kind.startswith(_BATCH_KIND) for k in keys]


@dataclass
class StoreScan:
    """One listing of the store: content objects by kind, runs, and other root records."""

    content: dict[str, set[str]]  # kind -> digests
    runs: dict[str, RunKeys]
    other_roots: list[str]  # registry records and unknown prefixes
    hints: list[str] = field(default_factory=list)  # similarity hints (not roots: they keep nothing)

    def live_runs(self) -> list[RunKeys]:
        return [r for r in self.runs.values() if not r.deleted]

    def deleted_runs(self) -> list[str]:
        return sorted(r.run_id for r in self.runs.values() if r.deleted)

    def root_keys(self) -> list[str]:
        """Every record whose references are roots: live runs' reference records, registry
        and unknown records."""
        keys = [k for r in self.live_runs() for k in r.reference_keys()]
        return keys + self.other_roots


def scan_store(backend: Backend, layout: ContentLayout) -> StoreScan:
    """List the whole store once and sort what is there (content objects in ``layout``)."""
    content: dict[str, set[str]] = {kind: set() for kind in CONTENT_KINDS}
    runs: dict[str, RunKeys] = {}
    other: list[str] = []
    hints: list[str] = []
    for key in backend.list(""):
        if key.startswith(".") or "/." in key:
            continue  # not a casstore object (no key part may start with '.')
        top, _, rest = key.partition("/")
        if top in content:
            parsed = layout.parse(key)
            if parsed is not None:
                content[top].add(parsed[1])
            continue
        if top == "runs":
            run_id, _, sub = rest.partition("/")
            if not run_id or not sub:
                continue
            kind = sub.partition("/")[0]
            runs.setdefault(run_id, RunKeys(run_id)).by_kind[kind].append(key)
            continue
        if top == HINTS:
            hints.append(key)
            continue
        if top in _NON_ROOT_PREFIXES:
            continue
        other.append(key)
    return StoreScan(content, runs, other, hints)


def list_content(backend: Backend, layout: ContentLayout) -> dict[str, set[str]]:
    """The digests of every stored chunk, file recipe and model entry (no run records listed)."""
    return {kind: set(layout.stored(backend, kind)) for kind in CONTENT_KINDS}


def root_digests(backend: Backend, keys: Sequence[str], progress: Progress | None = None) -> set[str]:
    """Every digest the given root records mention."""
    found: set[str] = set()
    for _key, data in read_many(backend, keys, progress):
        if data is not None:
            found |= digests_in(data)
    return found


def recipe_chunks(data: bytes, where: str) -> list[tuple[str, int]]:
    """The chunks a recipe lists; for a recipe that does not decode, every digest in its bytes
    (with unknown length 0), so a damaged recipe still keeps what it may reference."""
    try:
        return list(Recipe.decode(data, where).chunks)
    except CorruptRecordError:
        return [(d, 0) for d in sorted(digests_in(data))]


def closure(
    backend: Backend,
    layout: ContentLayout,
    present: dict[str, set[str]],
    seeds: Iterable[str],
    *,
    seed_objects: Mapping[str, Iterable[str]] | None = None,
    progress: Progress | None = None,
) -> dict[str, set[str]]:
    """The content objects reachable from ``seeds`` (digests named by root records) and from
    ``seed_objects`` (objects kept for another reason, whose references must stay too).

    A digest keeps an object of that name of any kind: so a file stored as one chunk
    without a recipe keeps its chunk. Model entries are followed to the digests they
    mention, file recipes to their chunks. Returns kind -> live digests.
    """
    live: dict[str, set[str]] = {kind: set() for kind in CONTENT_KINDS}
    pending = set(seeds)
    extra_models = set((seed_objects or {}).get("models", ()))
    extra_files = set((seed_objects or {}).get("files", ()))
    extra_chunks = set((seed_objects or {}).get("chunks", ()))
    # models first: they reference files (and possibly other models)
    todo_models = (pending & present["models"]) | (extra_models & present["models"])
    while todo_models:
        batch = sorted(todo_models - live["models"])
        live["models"] |= todo_models
        todo_models = set()
        for _key, data in read_many(backend, [layout.model_key(d) for d in batch], progress):
            if data is None:
                continue
            refs = digests_in(data)
            pending |= refs
            todo_models |= (refs & present["models"]) - live["models"]
    live["files"] = (pending & present["files"]) | (extra_files & present["files"])
    # a live file digest with no recipe is a file of one chunk: that chunk is the file
    chunks = (pending | extra_chunks) & present["chunks"]
    keys = [layout.recipe_key(d) for d in sorted(live["files"])]
    for key, data in read_many(backend, keys, progress):
        if data is None:
            continue
        for d, _n in recipe_chunks(data, f"recipe {key}"):
            chunks.add(d)
    live["chunks"] = chunks & present["chunks"]
    return live
