"""Verification: re-hash what is stored and check every record that points at it.

``verify_store(runs)`` (the whole store) re-hashes every chunk once, checks every
file recipe against the chunks it lists (present, of the recorded length), every
model entry against its digest and the recipes it pins, every sealed run's manifest
against its seal, every artifact and model a run binds, and every registry version's
pinned model. With ``deep``, every file's content is also re-hashed as a whole against
its digest (this reads shared chunks once per file that uses them).

``verify_store(runs, run_ids=[...])`` checks only what those runs reference, always
deeply: each of their files is read and re-hashed chunk by chunk and as a whole.

A file with no recipe whose chunk of the same digest is stored is that one chunk
(version-2 stores write small files so): re-hashing the chunk verifies the file. A
bound file with neither is missing.

Each problem names the damaged or missing object and what it affects: the runs and
artifact paths, the logged models and the registry versions that depend on it.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from blake3 import blake3

from casstore.exceptions import CasstoreError, CorruptRecordError, IntegrityError, ObjectNotFoundError
from casstore.maintenance.scan import Roots, list_content, prove_open_runs, read_many, runs_of
from casstore.objects.codec import unpack
from casstore.objects.recipes import Recipe

if TYPE_CHECKING:
    from casstore.runs import ArtifactEntry, RunStore

__all__ = ["Problem", "VerifyReport", "verify_store", "describe_affected"]

Progress = Callable[[str, int, int | None], None]
_NO_FILE = "no recipe for this file and no chunk of its digest: its content is not in the store"


@dataclass
class Problem:
    """One damaged or missing object and what depends on it."""

    object: str  # store key, e.g. chunks/ab/<digest>
    kind: str  # corrupt | missing | mismatch | unreadable
    detail: str
    affects: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"object": self.object, "kind": self.kind, "detail": self.detail, "affects": list(self.affects)}


#: the counters of a report's ``checked``, each present (zero when nothing of its kind was checked)
#: (``records``: run, experiment and registry records checked by ``--all``; ``records_unchecked``:
#: those among them written before records carried their own check, which can only be decoded)
CHECKED = ("chunks", "bytes", "files", "models", "runs", "manifests", "registry_versions", "deep_bytes",
           "records", "records_unchecked")


@dataclass
class VerifyReport:
    """What was checked and what was found. ``ok`` is true only when nothing is wrong."""

    scope: str  # "all" or "runs"
    deep: bool
    checked: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    skipped_deleted_runs: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "scope": self.scope,
            "deep": self.deep,
            "checked": {**dict.fromkeys(CHECKED, 0), **self.checked},
            "problems": [p.to_dict() for p in self.problems],
            "skipped_deleted_runs": self.skipped_deleted_runs,
            "seconds": round(self.seconds, 3),
        }


def describe_affected(a: dict[str, Any]) -> str:
    """One line for an affected item, e.g. ``run 3f2a... artifact model/weights.bin``."""
    if "artifact" in a:
        return f"run {a['run']} artifact {a['artifact']}"
    if "model" in a:
        return f"run {a['run']} model {a['model']}"
    if "registered_model" in a:
        return f"registered model {a['registered_model']} version {a['version']}"
    if "run" in a:
        return f"run {a['run']}"
    if "registry" in a:
        return f"registered model records {a['registry']}"
    if "experiment" in a:
        return f"experiment {a['experiment']}"
    if "model_entry" in a:
        return f"model entry {a['model_entry']}"
    return ", ".join(f"{k} {v}" for k, v in a.items())


def _hash_object(backend: Any, key: str) -> tuple[str, int] | None:
    """``(digest, size)`` of a stored object, or ``None`` if it is missing."""
    try:
        with backend.mapped(key) as data:  # a local store's file is hashed where it lies, not copied
            if len(data) >= 1 << 22:
                return blake3(data, max_threads=blake3.AUTO).hexdigest(), len(data)
            return blake3(data).hexdigest(), len(data)
    except ObjectNotFoundError:
        return None


def _workers(backend: Any) -> int:
    if backend.concurrency > 1:
        return int(backend.concurrency)
    return max(2, min(8, os.cpu_count() or 2))


class _Checker:
    """Collects problems by object and the reverse references that say what they affect."""

    def __init__(self, runs: RunStore, progress: Progress | None) -> None:
        self.runs = runs
        self.backend = runs.backend
        self.layout = runs.objects.layout
        self.progress = progress
        self.problems: dict[str, Problem] = {}
        self.bad: dict[str, set[str]] = {"chunks": set(), "files": set(), "models": set()}
        self.chunk_size: dict[str, int] = {}
        self.file_chunks: dict[str, list[tuple[str, int]]] = {}
        # reverse references: what to name when an object is damaged
        self.file_users: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.model_users: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.model_files: dict[str, list[str]] = {}
        # BLAKE3 of each recipe read, and the recipe digests model entries pin
        self.recipe_digest: dict[str, str] = {}
        self.model_pins: dict[str, list[tuple[str, str, str]]] = {}  # model -> [(path, file, pin)]
        self.checked: dict[str, int] = defaultdict(int)
        #: the checks of runs run in threads: what they record goes through problem() and count()
        self._lock = threading.RLock()

    def tick(self, stage: str, advance: int = 0, total: int | None = None) -> None:
        if self.progress:
            self.progress(stage, advance, total)

    def problem(self, key: str, kind: str, detail: str, affects: Iterable[dict[str, Any]] = ()) -> None:
        with self._lock:
            p = self.problems.get(key)
            if p is None:
                p = self.problems[key] = Problem(key, kind, detail)
            for a in affects:
                _add(p, a)

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.checked[name] += n

    # ---- content ---------------------------------------------------------------------

    def hash_chunks(self, digests: Sequence[str]) -> None:
        """Re-hash chunks (each read once), concurrently: in a store of the packs layout, the
        chunks that lie side by side in a pack with one ranged read per run of them."""
        self.tick("hashing chunks", 0, len(digests))
        keys = [self.layout.chunk_key(d) for d in digests]
        results = self._hash_packed(digests) if self.runs.objects.packs is not None else None
        if results is None:
            with ThreadPoolExecutor(_workers(self.backend), thread_name_prefix="casstore-verify") as pool:
                results = dict(zip(digests, pool.map(self._hash_chunk, digests)))
        for d, key in zip(digests, keys):
            res = results[d]
            self.tick("hashing chunks", 1)
            self.checked["chunks"] += 1
            if res is None:
                self.bad["chunks"].add(d)
                self.problem(key, "missing", "the chunk is missing")
                continue
            actual, size, where = res
            self.checked["bytes"] += size
            self.chunk_size[d] = size
            if actual != d:
                self.bad["chunks"].add(d)
                self.problem(key, "corrupt", f"its bytes{where} hash to {actual}, not to the digest that names it")

    def _hash_packed(self, digests: Sequence[str]) -> dict[str, tuple[str, int, str] | None]:
        """``_hash_chunk`` of each chunk of a packs store, reading the chunks an index places
        side by side in one pack with one ranged request per run of up to 16 MiB (a few runs
        at once): a pack costs a request or two, not one per chunk. A chunk no index places,
        or whose pack is gone since the index was read, is read on its own."""
        from casstore.objects.packs import Location, coalesce

        packs = self.runs.objects.packs
        assert packs is not None
        placed: list[tuple[str, int, Location | None]] = []
        alone: list[str] = []
        for d in digests:
            loc = packs.get(d)
            if loc is None:
                alone.append(d)
            else:
                placed.append((d, loc.length, loc))
        placed.sort(key=lambda item: (item[2].pack, item[2].offset) if item[2] else ("", 0))
        out: dict[str, tuple[str, int, str] | None] = {}

        def run_of(span: list[tuple[str, int, Location | None]]) -> list[tuple[str, tuple[str, int, str] | None]]:
            first, last = span[0][2], span[-1][2]
            assert first is not None and last is not None
            key = self.layout.pack_key(first.pack)
            try:
                raw = memoryview(self.backend.get_range(key, first.offset, last.offset + last.length))
            except ObjectNotFoundError:  # gc removed the pack since: look each chunk up anew
                return [(d, self._hash_chunk(d)) for d, _, _ in span]
            got: list[tuple[str, tuple[str, int, str] | None]] = []
            for d, n, loc in span:
                assert loc is not None
                piece = raw[loc.offset - first.offset : loc.offset - first.offset + n]
                where = f" (in {key} (bytes {loc.offset} to {loc.offset + n}))"
                got.append((d, (blake3(piece).hexdigest(), len(piece), where)))
            return got

        # runs of up to 16 MiB: four at once hold 64 MiB at most, as a download does
        with ThreadPoolExecutor(max(2, min(_workers(self.backend), 4)), thread_name_prefix="casstore-verify") as pool:
            for got in pool.map(run_of, coalesce(placed)):
                out.update(got)
            out.update(zip(alone, pool.map(self._hash_chunk, alone)))
        return out

    def check_pack_indexes(self) -> None:
        """Each index object of a packed store, as stored (not a local cache): its bytes
        must hash to its name and decode; one that does not is named (readers skip it and
        read the packs' own headers)."""
        from casstore.objects.packs import INDEX_PREFIX, decode_index

        keys = sorted(self.backend.list(INDEX_PREFIX))
        for key, data in read_many(self.backend, keys):
            if data is None:
                continue
            actual = blake3(data).hexdigest()
            if actual != key[len(INDEX_PREFIX):]:
                self.problem(key, "corrupt", f"its bytes hash to {actual}, not to the digest that names it")
                continue
            try:
                decode_index(data, key)
            except CorruptRecordError as e:
                self.problem(key, "corrupt", str(e))

    def _hash_chunk(self, digest: str) -> tuple[str, int, str] | None:
        """``(BLAKE3, size, where)`` of the chunk as stored (loose, or in a pack: ``where``
        names the pack and the bytes), None if missing."""
        if self.runs.objects.packs is None:
            found = _hash_object(self.backend, self.layout.chunk_key(digest))
            return None if found is None else (*found, "")
        try:
            where, data = self.runs.objects.stored_chunk(digest)
        except ObjectNotFoundError:
            return None
        return blake3(data).hexdigest(), len(data), "" if where.startswith("chunks/") else f" (in {where})"

    def _read_recipe(self, d: str, key: str, data: bytes | None) -> Recipe | None:
        self.checked["files"] += 1
        if data is None:
            self.bad["files"].add(d)
            self.problem(key, "missing", "the file recipe is missing")
            return None
        self.recipe_digest[d] = blake3(data).hexdigest()
        try:
            recipe = Recipe.decode(data, f"recipe {key}")
        except CorruptRecordError as e:
            self.bad["files"].add(d)
            self.problem(key, "corrupt", str(e))
            return None
        self.file_chunks[d] = list(recipe.chunks)
        return recipe

    def check_recipes(self, digests: Sequence[str]) -> None:
        """Check each recipe against the chunks already hashed: each is present, sound and
        of the length the recipe records."""
        self.tick("checking files", 0, len(digests))
        keys = [self.layout.recipe_key(d) for d in digests]
        for (key, data), d in zip(read_many(self.backend, keys), digests):
            self.tick("checking files", 1)
            recipe = self._read_recipe(d, key, data)
            if recipe is None:
                continue
            for c, n in recipe.chunks:
                if c in self.bad["chunks"]:
                    self.bad["files"].add(d)
                elif c not in self.chunk_size:
                    self.bad["files"].add(d)
                    self.bad["chunks"].add(c)
                    self.problem(self.layout.chunk_key(c), "missing", "the chunk is missing")
                elif self.chunk_size[c] != n:
                    self.bad["files"].add(d)
                    self.problem(key, "mismatch", f"chunk {c} has {self.chunk_size[c]} bytes, the recipe says {n}")

    def check_files_deep(self, digests: Sequence[str]) -> None:
        """Read each file through its recipe: every chunk re-hashed (once per store) and the
        whole content re-hashed against the file's digest. Files are checked concurrently."""
        self.tick("checking files", 0, len(digests))
        keys = [self.layout.recipe_key(d) for d in digests]
        recipes = []
        for (key, data), d in zip(read_many(self.backend, keys), digests):
            recipe = self._read_recipe(d, key, data)
            if recipe is None:
                self.tick("checking files", 1)
            else:
                recipes.append((d, key, recipe))
        with ThreadPoolExecutor(_workers(self.backend), thread_name_prefix="casstore-verify") as pool:
            for d, (found, counts) in zip([r[0] for r in recipes], pool.map(lambda r: self._stream_file(*r), recipes)):
                self.tick("checking files", 1)
                for name, n in counts.items():
                    self.checked[name] += n
                for key, kind, detail in found:
                    self.bad["files"].add(d)
                    parsed = self.layout.parse(key)
                    if parsed is not None and parsed[0] == "chunks":
                        self.bad["chunks"].add(parsed[1])
                    self.problem(key, kind, detail)

    def _stream_file(self, d: str, key: str, recipe: Recipe) -> tuple[list[tuple[str, str, str]], dict[str, int]]:
        """Problems found reading one file, as ``(object, kind, detail)``, and what was checked."""
        found: list[tuple[str, str, str]] = []
        counts = {"chunks": 0, "bytes": 0, "deep_bytes": 0}
        whole = blake3(max_threads=blake3.AUTO)
        for c, n in recipe.chunks:
            ckey = self.layout.chunk_key(c)
            try:
                where, data = self.runs.objects.stored_chunk(c)
                where = "" if where.startswith("chunks/") else f" (in {where})"
            except ObjectNotFoundError:
                found.append((ckey, "missing", "the chunk is missing"))
                return found, counts
            if c not in self.chunk_size:
                actual = blake3(data).hexdigest()
                if actual != c:
                    found.append((ckey, "corrupt", f"its bytes{where} hash to {actual}, not to the digest that names it"))
                    return found, counts
                self.chunk_size[c] = len(data)
                counts["chunks"] += 1
                counts["bytes"] += len(data)
            if len(data) != n:
                found.append((key, "mismatch", f"chunk {c} has {len(data)} bytes, the recipe says {n}"))
                return found, counts
            whole.update(data)
        counts["deep_bytes"] += recipe.size
        actual = whole.hexdigest()
        if actual != d:
            found.append((key, "corrupt", f"its chunks make up content that hashes to {actual}, not to the file's digest"))
        return found, counts

    def check_models(self, digests: Sequence[str], *, require: bool = False) -> None:
        """Check model entries against their digests and the files they list."""
        from casstore.models.entry import ModelEntry

        self.tick("checking models", 0, len(digests))
        keys = [self.layout.model_key(d) for d in digests]
        for (key, data), d in zip(read_many(self.backend, keys), digests):
            self.tick("checking models", 1)
            self.checked["models"] += 1
            if data is None:
                self.bad["models"].add(d)
                self.problem(key, "missing", "the model entry is missing")
                continue
            actual = blake3(data).hexdigest()
            if actual != d:
                self.bad["models"].add(d)
                self.problem(key, "corrupt", f"its bytes hash to {actual}, not to the model digest that names it")
                continue
            try:
                entry = ModelEntry.from_dict(unpack(data, f"model entry {key}"), f"model entry {key}")
            except CorruptRecordError as e:
                self.bad["models"].add(d)
                self.problem(key, "corrupt", str(e))
                continue
            self.model_files[d] = [f.digest for f in entry.files.values()]
            self.model_pins[d] = [(f.path, f.digest, f.recipe) for f in entry.files.values() if f.recipe is not None]
            for f in entry.files.values():
                self.file_users[f.digest].append({"model_entry": d, "file": f.path})

    def check_pins(self) -> None:
        """Check the recipe each model entry pins against the recipe read: a model whose
        pinned recipe differs cannot be loaded (even if the recipe makes up the file)."""
        for m, pins in sorted(self.model_pins.items()):
            for path, f, pin in sorted(pins):
                actual = self.recipe_digest.get(f)
                if actual is not None and actual != pin:
                    self.problem(
                        self.layout.model_key(m), "mismatch",
                        f"file {path!r} pins recipe {pin}, but recipe {self.layout.recipe_key(f)} hashes to {actual}",
                    )

    def check_one_chunk_files(self, digests: Iterable[str]) -> None:
        """Count files stored as one chunk of their own digest (no recipe), whose chunks are
        hashed already: each is sound if its chunk is."""
        for d in digests:
            self.checked["files"] += 1
            self.file_chunks[d] = [(d, self.chunk_size.get(d, 0))]
            if d in self.bad["chunks"]:
                self.bad["files"].add(d)

    # ---- records ---------------------------------------------------------------------

    def check_runs(self, run_ids: Sequence[str]) -> tuple[set[str], set[str], int]:
        """Check each run's seal, manifest and records; return the file and model digests
        they bind and how many were skipped as deleted. Runs are read several at once (on S3
        each takes a few round trips); what they bind is taken in the order of ``run_ids``."""
        files: set[str] = set()
        models: set[str] = set()
        skipped = 0
        self.tick("checking runs", 0, len(run_ids))
        with ThreadPoolExecutor(_workers(self.backend), thread_name_prefix="casstore-verify") as pool:
            for run_id, got in zip(run_ids, pool.map(self._check_run, run_ids)):
                self.tick("checking runs", 1)
                if got is None:
                    skipped += 1
                    continue
                arts, mods = got
                for digest, path in arts:
                    self.file_users[digest].append({"run": run_id, "artifact": path})
                    files.add(digest)
                for digest, name in mods:
                    self.model_users[digest].append({"run": run_id, "model": name})
                    models.add(digest)
        return files, models, skipped

    def _check_run(self, run_id: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]] | None:
        """Check one run; None if it is deleted, else the ``(file digest, path)`` of the
        artifacts and the ``(model digest, name)`` of the models it binds."""
        from casstore.runs import layout

        if self.runs.is_deleted(run_id):
            return None
        self.count("runs")
        who = {"run": run_id}
        try:
            view = self.runs.get_run(run_id, warn=False)
        except (IntegrityError, CorruptRecordError) as e:  # version 5: a seal that was all its run kept
            key, kind = _seal_object(self.runs, run_id), "corrupt"
            if key == layout.run_prefix(run_id):  # no seal, no meta, other records: what said what it is is gone
                key, kind = layout.seal_key(run_id, self.runs.generation(run_id)), "missing"
            self.problem(key, kind, str(e), [who])
            return [], []
        except ObjectNotFoundError as e:
            detail = str(e)
            if self.runs.compacts:  # a sealed run here keeps its seal only
                detail += (f": it has neither its meta record nor a seal; if it was sealed, restore "
                           f"{layout.seal_key(run_id, self.runs.generation(run_id))} from a backup")
            self.problem(layout.run_meta_key(run_id), "missing", detail, [who])
            return [], []
        except CasstoreError as e:
            self.problem(_seal_object(self.runs, run_id), "unreadable", str(e), [who])
            return [], []
        if view.sealed:
            self.count("manifests")
        for d in view.damaged:
            self.problem(d.key, "corrupt", d.detail, [who])
        self.check_earlier_seals(run_id, who)
        arts = []
        for path, entry in view.artifacts.items():
            if entry.inline:
                self.check_inline(run_id, entry)
            else:
                arts.append((entry.digest, path))
        return arts, [(ref.digest, name) for name, ref in view.models.items()]

    def check_earlier_seals(self, run_id: str, who: dict[str, Any]) -> None:
        """A run resumed after it ended: re-hash the manifest of every earlier seal too, and
        check that each later manifest names the digest before it."""
        from casstore.runs import layout

        latest = self.runs.generation(run_id)
        seals = []
        for g in range(latest + 1):
            try:
                seal = self.runs._seal_at(run_id, g)
            except CorruptRecordError as e:
                if g < latest:  # the current one's damage is named by the check of the run
                    self.problem(layout.seal_key(run_id, g), "corrupt", str(e), [who])
                return
            if seal is not None:
                seals.append(seal)
        if self.runs.batched:  # the manifest objects beside the seals that hold them: what audits hash
            for seal in seals:
                key = layout.manifest_key(run_id, str(seal["digest"]))
                try:
                    data = self.backend.get(key)
                except ObjectNotFoundError as e:
                    if "manifest" in seal and self.runs.manifest_objects:  # a version-4 end writes it before its seal
                        self.problem(key, "missing", str(e), [who])
                    continue
                except CasstoreError as e:
                    self.problem(key, "unreadable", str(e), [who])
                    continue
                if blake3(data).hexdigest() != seal["digest"]:
                    self.problem(key, "corrupt", f"its bytes hash to {blake3(data).hexdigest()}, not to the digest "
                                 "that names it (the seal's copy verifies)", [who])
        for before, seal in zip(seals, seals[1:]):
            key = layout.manifest_key(run_id, str(seal["digest"]))
            try:
                self.runs.read_manifest(run_id, str(before["digest"]))
                self.count("manifests")
                if self.runs.read_manifest(run_id, str(seal["digest"])).get("previous") != before["digest"]:
                    self.problem(key, "corrupt", f"manifest {key} does not name the seal before it ({before['digest']})", [who])
            except IntegrityError as e:
                self.problem(layout.manifest_key(run_id, str(before["digest"])), "corrupt", str(e), [who])
            except CasstoreError as e:
                self.problem(layout.manifest_key(run_id, str(before["digest"])), "unreadable", str(e), [who])

    def check_inline(self, run_id: str, entry: ArtifactEntry) -> None:
        """Check an artifact held in its binding record (or its batch record) against the
        run's entry for it."""
        from casstore.runs import layout
        from casstore.runs.batches import batch_key

        key = batch_key(run_id, entry.batch) if entry.batch else layout.artifact_key(run_id, entry.path)
        self.count("files")
        self.count("bytes", entry.size)
        who = [{"run": run_id, "artifact": entry.path}]
        try:
            self.runs.inline_data(run_id, entry)
        except (IntegrityError, CorruptRecordError) as e:
            self.problem(key, "corrupt", str(e), who)
        except ObjectNotFoundError as e:
            self.problem(key, "missing", str(e), who)
        except CasstoreError as e:
            self.problem(key, "unreadable", str(e), who)

    def check_records(self) -> None:
        """Check every record of the store's runs (live ones: loose records of sealed runs
        too), experiments and registry: each decodes and its own check holds; a manifest
        hashes to its name. Records written before records carried a check can only be
        decoded: they are counted as ``records_unchecked``."""
        from casstore.runs.records import record_is_checked

        listed = [k for prefix in ("runs/", "experiments/", "registry/") for k in self.backend.list(prefix)]
        deleted = {k.split("/")[1] for k in listed if k.startswith("runs/") and k.endswith("/deleted")}
        keys = [k for k in listed if not (k.startswith("runs/") and k.split("/")[1] in deleted)
                and k.split("/")[2:3] != ["wal"]]
        self.tick("checking records", 0, len(keys))
        for key, data in read_many(self.backend, keys):
            self.tick("checking records", 1)
            parts = key.split("/")
            who = [{"run": parts[1]}] if parts[0] == "runs" else [{"registry": "/".join(parts[:2])}] \
                if parts[0] == "registry" else [{"experiment": parts[1]}]
            if data is None:
                continue  # removed since listed: a sealed run's redundant records (runs/compact.py)
            self.checked["records"] += 1
            if parts[0] == "runs" and len(parts) == 4 and parts[2] == "manifests":
                actual = blake3(data).hexdigest()
                if actual != parts[3]:
                    self.problem(key, "corrupt", f"its bytes hash to {actual}, not to the digest that names it", who)
                continue
            try:
                if not record_is_checked(data, f"record {key}"):
                    self.checked["records_unchecked"] += 1
            except CorruptRecordError as e:
                self.problem(key, "corrupt", str(e), who)
        # a record removed from an open run: missed by the batch that lists it, or by the
        # gap or witness in the batch numbers (a damaged batch is reported above)
        proof = Roots()
        prove_open_runs(self.backend, runs_of(keys), proof)
        for b in proof.blockers:
            if not self.backend.exists(b.object):
                self.problem(b.object, "missing", b.detail, [{"run": b.affects.removeprefix("run ")}])

    def check_registry(self, only_models: set[str] | None = None) -> set[str]:
        """Record which live registry versions pin which model; return the pinned digests."""
        pinned: set[str] = set()
        try:
            from casstore.registry import Registry
        except ImportError:  # pragma: no cover - the registry is part of casstore
            return pinned
        reg = Registry(self.backend, self.runs.objects.layout)
        try:
            names = [m.name for m in reg.list_models()]
        except CasstoreError as e:
            self.problem("registry/", "unreadable", str(e))
            return pinned
        for name in names:
            try:
                versions = reg.list_versions(name)
            except CasstoreError as e:
                self.problem(f"registry/{name}", "unreadable", str(e), [{"registered_model": name, "version": "*"}])
                continue
            for mv in versions:
                if only_models is not None and mv.model_digest not in only_models:
                    continue
                self.checked["registry_versions"] += 1
                self.model_users[mv.model_digest].append({"registered_model": name, "version": mv.version})
                pinned.add(mv.model_digest)
        return pinned

    # ---- results ---------------------------------------------------------------------

    def finish(self) -> list[Problem]:
        """Attach to each problem what depends on the damaged object, through recipes,
        model entries, runs and registry versions."""
        chunk_files: dict[str, list[str]] = defaultdict(list)
        if self.bad["chunks"]:
            for f, chunks in self.file_chunks.items():
                for c, _n in chunks:
                    if c in self.bad["chunks"]:
                        chunk_files[c].append(f)
        for p in self.problems.values():
            kind, digest = self.layout.parse(p.object) or ("", "")
            files: list[str] = []
            models: list[str] = []
            if kind == "chunks":
                files = chunk_files.get(digest, [])
            elif kind == "files":
                files = [digest]
            elif kind == "models":
                models = [digest]
            for f in files:
                for user in self.file_users.get(f, []):
                    if "model_entry" in user:
                        models.append(user["model_entry"])
                    else:
                        _add(p, user)
                if not self.file_users.get(f):
                    _add(p, {"file": f})
            for m in dict.fromkeys(models):
                users = self.model_users.get(m, [])
                for user in users:
                    _add(p, user)
                if not users:
                    _add(p, {"model_entry": m})
        return sorted(self.problems.values(), key=lambda p: p.object)


def _add(p: Problem, a: dict[str, Any]) -> None:
    """Add ``a`` to what ``p`` affects; a whole run is not named again beside a part of it."""
    if a in p.affects:
        return
    if list(a) == ["run"]:
        if any(b.get("run") == a["run"] for b in p.affects):
            return
    elif "run" in a:
        p.affects[:] = [b for b in p.affects if b != {"run": a["run"]}]
    p.affects.append(a)


def _seal_object(runs: RunStore, run_id: str) -> str:
    from casstore.runs import layout

    seal = None
    try:
        seal = runs.seal_record(run_id)
    except CasstoreError:
        return layout.seal_key(run_id)
    if seal is None:
        return f"runs/{run_id}/"
    return layout.manifest_key(run_id, str(seal["digest"]))


def verify_store(
    runs: RunStore,
    run_ids: Sequence[str] | None = None,
    *,
    deep: bool = False,
    progress: Progress | None = None,
) -> VerifyReport:
    """Verify the whole store (``run_ids=None``) or what the given runs reference."""
    t0 = time.perf_counter()
    c = _Checker(runs, progress)
    layout = runs.objects.layout
    if run_ids is None:
        c.tick("listing")
        content = list_content(runs.backend, layout)
        if runs.objects.packs is not None:
            content["chunks"] |= set(runs.objects.iter_chunks())
            c.check_pack_indexes()
        if deep:
            c.check_files_deep(sorted(content["files"]))
            c.hash_chunks(sorted(content["chunks"] - set(c.chunk_size) - c.bad["chunks"]))
        else:
            c.hash_chunks(sorted(content["chunks"]))
            c.check_recipes(sorted(content["files"]))
        c.check_models(sorted(content["models"]))
        files, models, skipped = c.check_runs(runs.list_run_ids())
        c.check_records()
        pinned = c.check_registry()
        report = VerifyReport("all", deep, skipped_deleted_runs=skipped)
        # referenced files without a recipe whose chunk is stored: their chunk is the file
        referenced = files.union(*c.model_files.values())
        one_chunk = (referenced - content["files"]) & content["chunks"]
        c.check_one_chunk_files(sorted(one_chunk))
        present_files, present_models = content["files"] | one_chunk, content["models"]
    else:
        files, models, skipped = c.check_runs(list(dict.fromkeys(run_ids)))
        pinned = c.check_registry(only_models=models)
        c.check_models(sorted(models))
        for m in models:
            files.update(c.model_files.get(m, []))
        ordered = sorted(files)
        with_recipe = {f for f, ok in zip(ordered, runs.backend.exists_many([layout.recipe_key(f) for f in ordered])) if ok}
        c.check_files_deep(sorted(with_recipe))
        rest = sorted(files - with_recipe)
        if runs.objects.packs is not None:
            one_chunk = set(rest) - set(runs.objects.missing_files(rest))
        else:
            one_chunk = {f for f, ok in zip(rest, runs.backend.exists_many([layout.chunk_key(f) for f in rest])) if ok}
        c.hash_chunks(sorted(one_chunk - set(c.chunk_size) - c.bad["chunks"]))
        c.check_one_chunk_files(sorted(one_chunk))
        present_files = with_recipe | one_chunk
        present_models = set(c.model_files) | c.bad["models"]
        report = VerifyReport("runs", True, skipped_deleted_runs=skipped)
    c.check_pins()
    # references to objects the store does not hold at all
    for f in sorted(files - present_files):
        c.problem(layout.recipe_key(f), "missing", _NO_FILE)
    for m in sorted((models | pinned) - present_models):
        c.problem(layout.model_key(m), "missing", "the model entry is not in the store")
    for m, mfiles in c.model_files.items():
        for f in mfiles:
            if f not in present_files and run_ids is None:
                c.problem(layout.recipe_key(f), "missing", _NO_FILE)
    report.problems = c.finish()
    report.checked = dict(c.checked)
    report.seconds = time.perf_counter() - t0
    return report
