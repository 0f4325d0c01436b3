"""Fetching a model with every byte verified, before anything is deserialized.

The order is the integrity rule of the registry (guarantee 7):

1. resolve the model digest (registry version -> pinned digest; ``runs:/`` -> the
   run's model reference; ``cas:`` -> as given);
2. load the entry with :meth:`RunStore.load_model_entry`, which re-hashes it
   against that digest;
3. fetch every file the entry lists, verified in full before the next step: the
   file's recipe against the recipe digest the entry pins (``FileRef.recipe``), then
   every chunk against the recipe (digest and length). The entry is authenticated by
   the model digest, so the pinned recipe is too, and the chunks it lists, each
   verified, make up the file: the whole is not hashed again. A file whose entry has
   no pin (logged before casstore recorded them) is hashed whole against its digest
   as well, as :meth:`ObjectStore.get_file` does;
4. only then may a flavor deserialize anything, reading each file through
   :meth:`FetchedModel.take`.

Where the files go: without ``dest``, files of at least :data:`HOLD_MIN` bytes (a
model's data file) are held in memory as their verified chunks, the largest first,
up to :func:`memory_budget` bytes in all, so a large model is not copied into a temp
file and read back. Worker threads read and hash the chunks into memory the loading
thread allocates (:meth:`ObjectStore.read_chunks`), and :meth:`FetchedModel.take` lets
each go once read: the memory they take is handed back to the loading thread's
allocator while the model is unpickled, which reuses it for the byte strings the
unpickler reads (and keeps until it returns). So a load holds and faults in no more
memory than ``pickle.load`` of the file would. Every other file, and every file when
``dest`` is given, is written into the model directory under a temporary name, renamed
into place once verified.

A tampered byte anywhere raises :class:`~casstore.exceptions.IntegrityError` in
steps 2 or 3; then nothing is held and the private directory is removed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING

from casstore._files import make_dirs
from casstore._paths import safe_destination
from casstore.exceptions import IntegrityError, InvalidInputError, LocalFileError
from casstore.models.entry import FileRef, ModelEntry
from casstore.models.uri import Resolved, resolve_model_uri
from casstore.objects import ObjectStore
from casstore.objects.recipes import Recipe
from casstore._files import write_file
from casstore.objects.reading import open_chunks

if TYPE_CHECKING:
    from casstore.registry.store import Registry
    from casstore.runs import RunStore

__all__ = ["FetchedModel", "fetch_model", "fetch_model_uri", "load_entry", "memory_budget", "read_model_dir"]

#: without a destination directory, files at least this large are held in memory ...
HOLD_MIN = 8 << 20
#: ... up to this many bytes in all (and a quarter of the physical memory); larger
#: models are written to the private directory and read from there
MEMORY_MAX = 2 << 30


def memory_budget() -> int:
    """How many bytes of a model's files a load may hold in memory."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return MEMORY_MAX
    return min(MEMORY_MAX, physical // 4) if physical > 0 else MEMORY_MAX


@dataclass
class FetchedModel:
    """A model's verified files, and its entry: the files in ``held`` are in memory, the
    others in ``path`` (a private directory unless the caller gave one)."""

    path: str
    entry: ModelEntry
    model_digest: str
    resolved: Resolved | None = None
    #: model file path -> its verified chunks, in order
    held: dict[str, list[bytes | bytearray]] = field(default_factory=dict)
    _taken: set[str] = field(default_factory=set, init=False, repr=False)

    def take(self, rel: str) -> IO[bytes]:
        """A binary file object over the verified model file ``rel``. A file held in memory
        can be taken once: its chunks are let go as they are read."""
        if rel not in self.entry.files:
            raise InvalidInputError(f"model {self.entry.name!r} has no file {rel!r}")
        chunks = self.held.pop(rel, None)
        if chunks is not None:
            self._taken.add(rel)
            return open_chunks(_let_go(chunks), buffer_size=1 << 16)
        if rel in self._taken:
            raise InvalidInputError(f"model file {rel!r} was held in memory and has been read already")
        return open(os.path.join(self.path, *rel.split("/")), "rb")

    def cleanup(self) -> None:
        self.held.clear()
        shutil.rmtree(self.path, ignore_errors=True)


def _let_go(chunks: list[bytes | bytearray]) -> Iterator[bytes | bytearray]:
    """The chunks in order, each dropped from here once given (the list is emptied)."""
    queue = deque(chunks)
    chunks.clear()  # the queue holds the only references now
    while queue:
        yield queue.popleft()


def load_entry(store: RunStore, model_digest: str) -> ModelEntry:
    """The model entry named by ``model_digest``, verified against it and checked."""
    raw = store.load_model_entry(model_digest)
    return ModelEntry.from_dict(raw, f"model entry {model_digest}")


def fetch_model(store: RunStore, model_digest: str, dest: str | None = None, *, scratch: bool = False) -> FetchedModel:
    """Fetch every file of the model, verified: the large ones held in memory when
    ``dest`` is None, the others written into ``dest`` (default: a new private temp
    directory, removed again if anything fails). Files written into a ``dest`` are synced
    (:func:`casstore._files.write_file`) unless it is ``scratch`` (a private directory)."""
    entry = load_entry(store, model_digest)
    private = dest is None
    durable = False if private or scratch else None
    path = tempfile.mkdtemp(prefix="casstore-model-") if dest is None else os.fspath(dest)
    fetched = FetchedModel(path, entry, model_digest)
    hold = _to_hold(entry, memory_budget()) if private else set()
    try:
        if not private:
            make_dirs(path, durable=durable)
        for rel, ref in sorted(entry.files.items()):
            target = safe_destination(path, rel)
            if rel in hold:
                fetched.held[rel] = list(_verified_chunks(store.objects, ref))
            else:
                write_file(_verified_chunks(store.objects, ref), target, durable=durable)
    except BaseException:
        fetched.held.clear()
        if private:
            shutil.rmtree(path, ignore_errors=True)
        raise
    return fetched


def _to_hold(entry: ModelEntry, budget: int) -> set[str]:
    """The files to hold in memory: from HOLD_MIN bytes up, the largest first, while they fit."""
    hold = set()
    for rel, ref in sorted(entry.files.items(), key=lambda item: (-item[1].size, item[0])):
        if HOLD_MIN <= ref.size <= budget:
            hold.add(rel)
            budget -= ref.size
    return hold


def _recipe(objects: ObjectStore, ref: FileRef) -> Recipe:
    """The file's recipe, checked against the entry's pin and recorded size."""
    try:
        recipe = objects.recipe(ref.digest, pin=ref.recipe)
    except IntegrityError as e:
        raise IntegrityError(
            f"model file {ref.path!r} ({e.obj})", e.expected, e.actual, "its recipe is not the one the model entry pins"
        ) from e
    if recipe.size != ref.size:
        raise IntegrityError(f"model file {ref.path!r}", ref.digest, ref.digest, f"size {recipe.size} != recorded {ref.size}")
    return recipe


def _verified_chunks(objects: ObjectStore, ref: FileRef) -> Iterator[bytes | bytearray]:
    """The file's chunks in order, each verified against its recipe; unless the recipe is
    pinned, the whole is hashed too and checked after the last chunk
    (:meth:`ObjectStore.iter_by_recipe`)."""
    return objects.iter_by_recipe(ref.digest, _recipe(objects, ref), pinned=ref.recipe is not None)


def fetch_model_uri(uri: str, store: RunStore, registry: Registry | None = None, dest: str | None = None) -> FetchedModel:
    """Resolve ``uri`` and fetch the model it names (see :func:`fetch_model`)."""
    resolved = resolve_model_uri(uri, store, registry)
    fetched = fetch_model(store, resolved.model_digest, dest)
    fetched.resolved = resolved
    return fetched


def read_model_dir(model_dir: str, read_size: int = 8 << 20) -> FetchedModel:
    """A local MLflow model directory (``MLmodel`` with an ``sklearn`` flavor) as a
    :class:`FetchedModel`: each file read once into memory and hashed as it is read, so
    the bytes the flavor deserializes are the bytes the model digest names. Nothing
    vouches for a local directory; its digest (of the entry built from ``MLmodel`` and
    the files' BLAKE3 digests) says which bytes were loaded."""
    from casstore.models.entry import FileRef
    from casstore.models.mlmodel import MLMODEL, entry_from_mlmodel
    from casstore.objects.digest import new_hasher

    root = os.path.abspath(model_dir)
    if not os.path.isfile(os.path.join(root, MLMODEL)):
        raise LocalFileError(f"{model_dir!r} is not an MLflow model directory: it has no {MLMODEL} file")
    held: dict[str, list[bytes | bytearray]] = {}
    refs: dict[str, FileRef] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in sorted(filenames):
            full = os.path.join(dirpath, fn)
            if not os.path.isfile(full):
                continue
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            hasher, size = new_hasher(), 0
            chunks: list[bytes | bytearray] = []
            try:
                with open(full, "rb") as f:
                    while block := f.read(read_size):
                        hasher.update(block)
                        chunks.append(block)
                        size += len(block)
            except OSError as e:
                raise LocalFileError(f"cannot read model file {full!r}: {e}") from e
            held[rel] = chunks
            refs[rel] = FileRef(rel, hasher.hexdigest(), size)
    entry = entry_from_mlmodel(root, os.path.basename(root) or "model", refs, refs.__getitem__, None)
    if entry is None:
        raise InvalidInputError(
            f"{model_dir!r} is not a model casstore can load: its {MLMODEL} has no sklearn flavor whose model file is in the directory"
        )
    return FetchedModel(tempfile.mkdtemp(prefix="casstore-model-"), entry, entry.digest, held=held)
