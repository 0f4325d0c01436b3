"""The objects layer: chunking, hashing, file recipes and verified streaming I/O.

>>> from casstore.objects import open_store
>>> objects = open_store("memory://doc-objects")
>>> digest, size = objects.put_bytes(b"hello")
>>> digest
'ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f'
>>> objects.get_bytes(digest)
b'hello'
"""

from __future__ import annotations

import os
from typing import Any

from casstore.backend import Backend, LocalBackend, open_backend
from casstore.exceptions import StoreConfigError
from casstore.objects.chunking import DEFAULT_CHUNKER, Chunker, ChunkerParams
from casstore.objects.config import CONFIG_KEY, StoreConfig, load_or_create_config, read_config
from casstore.objects.digest import check_digest, hash_bytes, is_digest
from casstore.objects.layout import ContentLayout
from casstore.objects.recipes import Recipe
from casstore.objects.statcache import StatCache
from casstore.objects.store import EMPTY_DIGEST, ObjectStore, Stored

#: the content layout of new stores opened without one: ``loose`` or ``packs`` (unset: the
#: backend's default, :func:`~casstore.objects.config.default_layout`)
LAYOUT_ENV = "CASSTORE_LAYOUT"

__all__ = [
    "LAYOUT_ENV",
    "open_store",
    "open_objects",
    "ObjectStore",
    "Stored",
    "Recipe",
    "Chunker",
    "ChunkerParams",
    "DEFAULT_CHUNKER",
    "StoreConfig",
    "ContentLayout",
    "EMPTY_DIGEST",
    "hash_bytes",
    "check_digest",
    "is_digest",
]


def open_objects(
    backend: Backend,
    *,
    chunker: ChunkerParams | None = None,
    create: bool = True,
    max_in_flight: int | None = None,
    stat_cache: StatCache | bool = True,
    layout: str | None = None,
) -> ObjectStore:
    """The object store on an open backend, creating its config if the store is new.

    ``layout`` is the content layout: ``"loose"`` (one object per chunk) or ``"packs"``
    (chunks in packs, see :mod:`casstore.objects.packs`); for an existing store it must be
    the store's. Without it a new store gets ``CASSTORE_LAYOUT`` if that is set, else its
    backend's default (:func:`~casstore.objects.config.default_layout`: packs on remote
    stores, :data:`~casstore.objects.config.LOCAL_LAYOUT` on a local disk and in memory).

    ``max_in_flight`` bounds the chunks held at once by a remote upload or download
    (default: ``CASSTORE_MAX_IN_FLIGHT``, else twice the backend's concurrency).
    ``stat_cache``: the record of hashed local files that spares hashing an unchanged one
    again (:mod:`casstore.objects.statcache`); True for this user's (unless
    ``CASSTORE_STAT_CACHE=0``), False to hash every file."""
    if isinstance(backend, LocalBackend) and not backend.exists(CONFIG_KEY):
        # the config itself may appear meanwhile: a concurrent opener is creating the store
        entries = [e for e in os.listdir(backend.root) if not e.startswith(".") and e != CONFIG_KEY]
        if entries and not create:
            raise StoreConfigError(f"{backend.root!r} is not a casstore store (it has no {CONFIG_KEY})")
        if entries:
            raise StoreConfigError(
                f"{backend.root!r} is a non-empty directory that is not a casstore store (no {CONFIG_KEY}); "
                "refusing to write into it. Point the store at a new or empty directory."
            )
    if not create and not backend.exists(CONFIG_KEY):
        # a read says why there is none: a missing bucket or a refused read is the backend's
        # own error, which an existence check cannot tell from an empty prefix
        read_config(backend)
    new_layout = os.environ.get(LAYOUT_ENV, "").strip() or None
    config = load_or_create_config(backend, chunker, layout, new_layout=new_layout)
    return ObjectStore(backend, config, max_in_flight=max_in_flight, stat_cache=stat_cache)


def open_store(
    url: str | os.PathLike[str],
    storage_options: dict[str, Any] | None = None,
    *,
    chunker: ChunkerParams | None = None,
    create: bool = True,
    durable: bool | None = None,
    max_in_flight: int | None = None,
    stat_cache: StatCache | bool = True,
    layout: str | None = None,
) -> ObjectStore:
    """Open (or create) the object store at a URL or local path (the options as for
    :func:`open_objects`)."""
    backend = open_backend(url, storage_options, durable=durable)
    return open_objects(
        backend, chunker=chunker, create=create, max_in_flight=max_in_flight, stat_cache=stat_cache, layout=layout
    )
