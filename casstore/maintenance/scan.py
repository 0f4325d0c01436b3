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
from typing import Any

from blake3 import blake3

from casstore.backend.base import Backend
from casstore.exceptions import CasstoreError, CorruptRecordError, ObjectNotFoundError
from casstore.objects.layout import CONTENT_KINDS, HINTS, PACKS, ContentLayout
from casstore.objects.recipes import Recipe

__all__ = [
    "CONTENT_KINDS",
    "DIGEST_BYTES_RE",
    "Blocker",
    "Roots",
    "read_roots",
    "prove_open_runs",
    "RunKeys",
    "StoreScan",
    "closure",
    "digests_in",
    "list_content",
    "read_many",
    "recipe_chunks",
    "root_digests",
    "runs_of",
    "scan_store",
]

#: a 64-hex digest inside raw record bytes (msgpack stores str as plain UTF-8)
DIGEST_BYTES_RE = re.compile(rb"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")

# top-level prefixes that hold no references to content
_NON_ROOT_PREFIXES = ("chunks", "files", "models", "gc", "experiments", "casstore.json", "wal", "packs", "chunk-index", "index")
# per-run record kinds that hold no references to content (values are user strings or numbers);
# a seal of version 4 holds the run's manifest, so seals are read as roots
_RUN_KINDS_WITHOUT_REFS = frozenset({"meta", "params", "tags", "metrics", "deleted", "dirs"})
#: version 4's batch records (``batch-<n>``): params, tags, metric points, the artifacts bound
#: in a run whose bindings are in its batches, and digests of records they list (an open run's
#: are read and proven by :func:`prove_open_runs`), and their witnesses (``last-<n>``)
_BATCH_KIND = "batch-"
_WITNESS_KIND = "last-"

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

    def _generations(self, kind: str) -> list[int]:
        return [int(g) for k in self.by_kind.get(kind, ()) if (g := k.rsplit("/", 1)[-1]).isdigit()]

    @property
    def generation(self) -> int:
        """The generation being written: 0, or how many times the run was resumed after ending."""
        return max(self._generations("reopened"), default=0)

    @property
    def open(self) -> bool:
        """Whether the run is live and open: not deleted, and not sealed since it was last resumed."""
        if self.deleted:
            return False
        sealed = ([0] if self.sealed else []) + self._generations("seals")
        return not sealed or self.generation > max(sealed)

    def batch_keys(self, kind: str = _BATCH_KIND) -> dict[int, str]:
        """This run's batch records (version 4) by number (their witnesses: ``kind="last-"``)."""
        from casstore.runs.batches import batch_number

        out: dict[int, str] = {}
        for k in (k for name, keys in self.by_kind.items() if name.startswith(kind) for k in keys):
            n = batch_number(k, kind)
            if n is not None:
                out[n] = k
        return out

    def reference_keys(self) -> list[str]:
        """Keys of this run's records that may reference content."""
        return [k for kind, keys in self.by_kind.items() if kind not in _RUN_KINDS_WITHOUT_REFS
                and not kind.startswith((_BATCH_KIND, _WITNESS_KIND)) for k in keys]


@dataclass
class StoreScan:
    """One listing of the store: content objects by kind, runs, and other root records."""

    content: dict[str, set[str]]  # kind -> digests
    runs: dict[str, RunKeys]
    other_roots: list[str]  # registry records and unknown prefixes
    hints: list[str] = field(default_factory=list)  # similarity hints (not roots: they keep nothing)
    packs: set[str] = field(default_factory=set)  # packs (a store of the packs layout)

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
    packs: set[str] = set()
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
            _add_run_key(runs, key)
            continue
        if top == HINTS:
            hints.append(key)
            continue
        if top == PACKS:
            parsed = layout.parse(key)
            if parsed is not None:
                packs.add(parsed[1])
            continue
        if top in _NON_ROOT_PREFIXES:
            continue
        other.append(key)
    return StoreScan(content, runs, other, hints, packs)


def _add_run_key(runs: dict[str, RunKeys], key: str) -> None:
    run_id, _, sub = key.removeprefix("runs/").partition("/")
    if run_id and sub:
        runs.setdefault(run_id, RunKeys(run_id)).by_kind[sub.partition("/")[0]].append(key)


def runs_of(keys: Iterable[str]) -> StoreScan:
    """A scan of the runs alone, from a listing of ``runs/``."""
    runs: dict[str, RunKeys] = {}
    for key in keys:
        if key.startswith("runs/"):
            _add_run_key(runs, key)
    return StoreScan({kind: set() for kind in CONTENT_KINDS}, runs, [])


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


@dataclass(frozen=True)
class Blocker:
    """A live reference gc could not prove: the object, what is wrong, what it belongs to."""

    object: str
    detail: str
    affects: str

    def to_dict(self) -> dict[str, str]:
        return {"object": self.object, "detail": self.detail, "affects": self.affects}


@dataclass
class Roots:
    """What the root records reference: every digest in their bytes (``digests``, an
    over-count that keeps whatever they might name), the file and model digests they
    reference for certain (each with who references it), which must be in the store,
    and the roots that could not be read or proven (``blockers``)."""

    digests: set[str] = field(default_factory=set)
    files: dict[str, str] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)
    blockers: list[Blocker] = field(default_factory=list)


def _who(key: str) -> str:
    parts = key.split("/")
    if parts[0] == "runs" and len(parts) > 1:
        return f"run {parts[1]}"
    return "the registry" if parts[0] == "registry" else f"record {key}"


def _read_root(key: str, data: bytes, roots: Roots) -> None:
    """Take what one root record references; a record of a kind this version knows must
    decode (and check itself) and name well-formed digests, else it blocks."""
    from casstore.runs.records import decode_record, field_of

    parts = key.split("/")
    kind = parts[2] if parts[0] == "runs" and len(parts) > 3 else ""
    if parts[0] == "runs" and len(parts) in (3, 4) and parts[2] in ("seal", "seals"):
        kind = "seal"
    who = _who(key)
    try:
        man: dict[str, Any] | None = None
        if kind == "manifests":
            actual = blake3(data).hexdigest()
            if actual != parts[3]:
                raise CorruptRecordError(f"manifest {key} hashes to {actual}, not to the digest that names it")
            man = decode_record(data, f"manifest {key}")
        elif kind == "seal":  # checks itself; version 4's holds the manifest its digest names
            seal = decode_record(data, f"record {key}")
            held = seal.get("manifest")
            if held is not None:
                if not isinstance(held, bytes) or blake3(held).hexdigest() != seal.get("digest"):
                    raise CorruptRecordError(f"record {key}: the manifest it holds does not hash to its digest")
                man = decode_record(held, f"manifest in {key}")
        if man is not None:
            for path, a in field_of(man, "artifacts", "dict", key).items():
                if not isinstance(a, dict) or not isinstance(a.get("digest"), str):
                    raise CorruptRecordError(f"manifest {key}: artifact {path!r} is malformed")
                if a.get("kind", "file") != "inline":
                    roots.files[a["digest"]] = f"{who} artifact {path}"
            for name, digest in field_of(man, "models", "dict", key).items():
                roots.models[str(digest)] = f"{who} model {name}"
        elif kind == "artifacts":
            rec = decode_record(data, f"record {key}")
            digest = field_of(rec, "digest", "str", key)
            if rec.get("kind", "file") != "inline":
                roots.files[digest] = f"{who} artifact {rec.get('path')}"
        elif kind == "models":
            rec = decode_record(data, f"record {key}")
            roots.models[field_of(rec, "digest", "str", key)] = f"{who} model {rec.get('name')}"
    except CasstoreError as e:
        roots.blockers.append(Blocker(key, str(e), who))


def read_roots(backend: Backend, keys: Sequence[str], progress: Progress | None = None) -> Roots:
    """Read every root record: the digests each mentions, and the references of each kind
    this version knows, proven (see :class:`Roots`). A root that vanished since it was
    listed blocks too: records are never removed."""
    roots = Roots()
    for key, data in read_many(backend, keys, progress):
        if data is None:
            roots.blockers.append(Blocker(key, "the record was listed but could not be read", _who(key)))
            continue
        roots.digests |= digests_in(data)
        _read_root(key, data, roots)
    for d in [*roots.files, *roots.models]:
        roots.digests.add(d)
    return roots


def prove_open_runs(backend: Backend, scan: StoreScan, roots: Roots, progress: Progress | None = None) -> None:
    """Prove that no record of an open run was removed (see casstore/runs/batches.py): its
    batch records are numbered without a gap up to at least the number its witness record
    holds, and every record a batch lists is there. What a batch lists is a reference too
    (its digests join ``roots``). What fails is added to the blockers, after the store is
    asked again (a record or batch written while the listing went by is no damage, nor is
    a run sealed or deleted meanwhile). Runs without batches (stores before version 4) and
    records written before batches listed them are proven as before: by reading them."""
    from casstore.runs.batches import batch_key, decode_batch, witness_key
    from casstore.runs.layout import deleted_key, seal_key
    from casstore.runs.records import INLINE

    runs = [r for r in scan.live_runs() if r.open]
    batches = {k: (r, n) for r in runs for n, k in r.batch_keys().items()}
    missing: dict[str, list[tuple[str, Blocker]]] = defaultdict(list)  # run id -> (key, blocker if absent)
    earlier: dict[str, int] = defaultdict(int)  # run id -> greatest number of a batch of a sealed generation
    listed = {r.run_id: {k for keys in r.by_kind.values() for k in keys} for r in runs}
    for key, data in read_many(backend, list(batches), progress):
        run, n = batches[key]
        who = f"run {run.run_id}"
        if data is None:
            roots.blockers.append(Blocker(key, "the record was listed but could not be read", who))
            continue
        try:
            batch = decode_batch(data, key, n)
        except CasstoreError as e:
            roots.blockers.append(Blocker(key, f"{e}: which records of the open run it lists is unknown", who))
            continue
        if batch.g < run.generation:
            earlier[run.run_id] = max(earlier[run.run_id], n)
        for a in batch.artifacts:  # artifacts bound in the batch itself
            if a[3] != INLINE:
                roots.digests.add(a[1])
                roots.files[a[1]] = f"{who} artifact {a[0]}"
        for rel, digest in batch.refs.items():
            roots.digests.add(digest)  # the record itself, if there, is proven as a root
            record = f"runs/{run.run_id}/{rel}"
            if record not in listed[run.run_id]:
                missing[run.run_id].append((record, Blocker(
                    record, f"the record is missing: batch record {key} lists it as bound (to {digest}); "
                    "it was removed from the open run", who)))
    for run in runs:
        numbers = run.batch_keys()
        top = max([*run.batch_keys(_WITNESS_KIND), *numbers], default=0)
        # a run resumed after a seal: its sealed generations' records are the seal's business
        # (on a local disk the seal removed most of them); the open one numbers from after them
        low = 1 if not run.sealed else max(earlier[run.run_id], _sealed_top(backend, run)) + 1
        for n in range(low, top + 1):
            if n not in numbers:
                k = batch_key(run.run_id, n)
                why = (f"batch records number 1 to {top}" if n != top else
                       f"its witness record {witness_key(run.run_id, top)} says it was written")
                missing[run.run_id].append((k, Blocker(
                    k, f"the record is missing ({why}): it was removed from the open run, and what it "
                    "listed is unknown", f"run {run.run_id}")))
    if not missing:
        return
    generation = {r.run_id: r.generation for r in runs}
    ask = [k for rid, items in missing.items()
           for k in (seal_key(rid, generation[rid]), deleted_key(rid), *(k for k, _b in items))]
    there = dict(zip(ask, backend.exists_many(ask)))
    for rid, items in missing.items():
        if there[seal_key(rid, generation[rid])] or there[deleted_key(rid)]:
            continue  # sealed or deleted meanwhile: its seal or deletion decides
        roots.blockers.extend(b for k, b in items if not there[k])


def _sealed_top(backend: Backend, run: RunKeys) -> int:
    """The greatest batch number the seal before a resumed run's open generation folded
    (``top``, version 5), 0 if it does not say or cannot be read (then the batches decide)."""
    from casstore.runs.layout import seal_key
    from casstore.runs.records import decode_record

    try:
        top = decode_record(backend.get(seal_key(run.run_id, run.generation - 1)), "seal").get("top")
    except CasstoreError:
        return 0
    return top if isinstance(top, int) and not isinstance(top, bool) else 0


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
    prove: Roots | None = None,
) -> dict[str, set[str]]:
    """The content objects reachable from ``seeds`` (digests named by root records) and from
    ``seed_objects`` (objects kept for another reason, whose references must stay too).

    A digest keeps an object of that name of any kind: so a file stored as one chunk
    without a recipe keeps its chunk. Model entries are followed to the digests they
    mention, file recipes to their chunks. Returns kind -> live digests.

    With ``prove`` (the roots read), every reference it holds for certain is checked on
    the way, and what fails is added to its blockers: a referenced model entry or file
    that is not stored, a model entry that does not hash to its digest, a recipe that
    does not decode or lists a chunk that is not stored.
    """
    blockers = prove.blockers if prove is not None else None
    models_needed: dict[str, str] = dict(prove.models) if prove is not None else {}
    files_needed: dict[str, str] = dict(prove.files) if prove is not None else {}
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
        for key, data in read_many(backend, [layout.model_key(d) for d in batch], progress):
            if data is None:
                continue
            refs = digests_in(data)
            if blockers is not None:
                _prove_model(key, data, models_needed, files_needed, blockers)
            pending |= refs
            todo_models |= (refs & present["models"]) - live["models"]
    live["files"] = (pending & present["files"]) | (extra_files & present["files"])
    # a live file digest with no recipe is a file of one chunk: that chunk is the file
    chunks = (pending | extra_chunks) & present["chunks"]
    # referenced objects the listing did not show: created since (a writer publishes a
    # record after its content), or missing; asked again below
    unlisted: list[tuple[list[str], Blocker]] = []
    if blockers is not None:
        for d, who in sorted(models_needed.items()):
            if d not in present["models"]:
                unlisted.append(([layout.model_key(d)], Blocker(layout.model_key(d), "the model entry is not in the store", who)))
        for d, who in sorted(files_needed.items()):
            if d not in present["files"] and d not in present["chunks"]:
                unlisted.append(([layout.recipe_key(d), layout.chunk_key(d)], Blocker(
                    layout.recipe_key(d), "the file's recipe is missing (and it is no stored chunk): which chunks "
                    "it needs is unknown", who)))
    keys = [layout.recipe_key(d) for d in sorted(live["files"])]
    for key, data in read_many(backend, keys, progress):
        if data is None:
            if blockers is not None:
                blockers.append(Blocker(key, "the recipe vanished while gc read it", "a live file"))
            continue
        listed = recipe_chunks(data, f"recipe {key}")
        chunks.update(d for d, _n in listed)
        if blockers is not None:
            who = files_needed.get(key.rsplit("/", 1)[-1], "a live file")
            try:
                Recipe.decode(data, f"recipe {key}")
            except CorruptRecordError as e:
                blockers.append(Blocker(key, f"{e}: which chunks the file needs is not known for certain", who))
                continue
            for d, _n in listed:
                if d not in present["chunks"]:
                    unlisted.append(([layout.chunk_key(d)], Blocker(
                        key, f"the recipe lists chunk {d}, which the store does not hold: it may be damaged", who)))
    if blockers is not None and unlisted:
        flat = [k for ks, _b in unlisted for k in ks]
        there = dict(zip(flat, backend.exists_many(flat)))
        blockers.extend(b for ks, b in unlisted if not any(there[k] for k in ks))
    live["chunks"] = chunks & present["chunks"]
    return live


def _prove_model(key: str, data: bytes, models_needed: dict[str, str],
                 files_needed: dict[str, str], blockers: list[Blocker]) -> None:
    """A live model entry must hash to its digest; the files it lists must then be stored."""
    digest = key.rsplit("/", 1)[-1]
    who = models_needed.get(digest, f"model entry {digest}")
    actual = blake3(data).hexdigest()
    if actual != digest:
        blockers.append(Blocker(key, f"the model entry hashes to {actual}, not to its digest: "
                                "the files it lists are unknown", who))
        return
    from casstore.objects.codec import unpack

    try:
        entry = unpack(data, f"model entry {key}")
        files = entry.get("files") if isinstance(entry, dict) else None
        for rel, f in (files or {}).items():
            if isinstance(f, dict) and isinstance(f.get("digest"), str):
                files_needed.setdefault(f["digest"], f"{who} file {rel}")
    except CorruptRecordError as e:
        blockers.append(Blocker(key, str(e), who))
