"""Fetching a model with every byte verified, before anything is deserialized.

The order is the integrity rule of the registry (guarantee 7):

1. resolve the model digest (registry version -> pinned digest; ``runs:/`` -> the
   run's model reference; ``cas:`` -> as given);
2. load the entry with :meth:`RunStore.load_model_entry`, which re-hashes it
   against that digest;
3. write every file the entry lists into a private directory, each chunk and
   each whole file checked against the entry's digests (``ObjectStore.get_file``);
4. only then may a flavor deserialize anything.

A tampered byte anywhere raises :class:`~casstore.exceptions.IntegrityError` in
steps 2 or 3, and the private directory is removed.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from casstore._paths import safe_destination
from casstore.exceptions import IntegrityError
from casstore.models.entry import FileRef, ModelEntry
from casstore.models.uri import Resolved, resolve_model_uri
from casstore.objects import ObjectStore
from casstore.objects.digest import new_hasher

if TYPE_CHECKING:
    from casstore.registry.store import Registry
    from casstore.runs import RunStore

__all__ = ["FetchedModel", "fetch_model", "fetch_model_uri", "load_entry"]

#: files at least this large have their chunks read and verified by worker threads,
#: overlapped with the whole-file hash (model data files run to hundreds of MB)
PARALLEL_MIN = 8 << 20
_READ_AHEAD = 4


@dataclass
class FetchedModel:
    """A model's verified files in ``path`` (a private directory), and its entry."""

    path: str
    entry: ModelEntry
    model_digest: str
    resolved: Resolved | None = None

    def cleanup(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def load_entry(store: RunStore, model_digest: str) -> ModelEntry:
    """The model entry named by ``model_digest``, verified against it and checked."""
    raw = store.load_model_entry(model_digest)
    return ModelEntry.from_dict(raw, f"model entry {model_digest}")


def fetch_model(store: RunStore, model_digest: str, dest: str | None = None) -> FetchedModel:
    """Verify and write every file of the model into ``dest`` (default: a new private
    temp directory, removed again if anything fails)."""
    entry = load_entry(store, model_digest)
    private = dest is None
    path = tempfile.mkdtemp(prefix="casstore-model-") if dest is None else os.fspath(dest)
    try:
        os.makedirs(path, exist_ok=True)
        for rel, ref in sorted(entry.files.items()):
            target = safe_destination(path, rel)
            _write_verified(store.objects, ref, target)
            size = os.path.getsize(target)
            if size != ref.size:
                raise IntegrityError(f"model file {rel}", ref.digest, ref.digest, f"size {size} != recorded {ref.size}")
    except BaseException:
        if private:
            shutil.rmtree(path, ignore_errors=True)
        raise
    return FetchedModel(path, entry, model_digest)


def _write_verified(objects: ObjectStore, ref: FileRef, target: str) -> None:
    """Write one model file to ``target`` with every chunk and the whole verified: as
    ``ObjectStore.get_file`` does, but on a large file chunk reads and their hashes run in
    two worker threads while this thread hashes the whole (BLAKE3 releases the GIL)."""
    if ref.size < PARALLEL_MIN:
        objects.get_file(ref.digest, target)
        return
    recipe = objects.recipe(ref.digest)
    whole = new_hasher()
    tmp = f"{target}.casstore-part"
    try:
        with ThreadPoolExecutor(2, thread_name_prefix="casstore-fetch") as pool, open(tmp, "wb") as out:
            todo = iter(recipe.chunks)
            window: deque[Future[bytes]] = deque(pool.submit(objects.read_chunk, d, n) for d, n in itertools.islice(todo, _READ_AHEAD))
            while window:
                data = window.popleft().result()
                for d, n in itertools.islice(todo, 1):
                    window.append(pool.submit(objects.read_chunk, d, n))
                whole.update(data)
                out.write(data)
        actual = whole.hexdigest()
        if actual != ref.digest:
            raise IntegrityError(f"file {ref.digest}", ref.digest, actual, "its chunks do not make up the recorded file")
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def fetch_model_uri(uri: str, store: RunStore, registry: Registry | None = None, dest: str | None = None) -> FetchedModel:
    """Resolve ``uri`` and fetch the model it names (see :func:`fetch_model`)."""
    resolved = resolve_model_uri(uri, store, registry)
    fetched = fetch_model(store, resolved.model_digest, dest)
    fetched.resolved = resolved
    return fetched
