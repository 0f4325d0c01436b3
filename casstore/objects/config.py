"""The store's configuration object, ``casstore.json``: written once, versioned.

It fixes what every writer must agree on: the format version, the hash and the
chunker parameters. It is created with create-if-absent, so concurrent first
writers agree on one config; a store whose config this code cannot honour is
refused with :class:`StoreConfigError`.

New stores get format version 4; stores of versions 1 to 3 are read and written in
their own layout (see :mod:`casstore.objects.layout`, and :mod:`casstore.runs.batches` for
the run records of version 4), so older casstore can still read them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from casstore.backend.base import Backend
from casstore.exceptions import ObjectNotFoundError, StoreConfigError
from casstore.objects.chunking import DEFAULT_CHUNKER, ChunkerParams
from casstore.objects.layout import ContentLayout

__all__ = ["CONFIG_KEY", "FORMAT_VERSION", "StoreConfig", "load_or_create_config", "read_config"]

CONFIG_KEY = "casstore.json"
FORMAT_NAME = "casstore"
#: the version of new stores, and the highest this casstore reads (it reads 1 to 3 too)
FORMAT_VERSION = 4


@dataclass(frozen=True)
class StoreConfig:
    version: int = FORMAT_VERSION
    hash: str = "blake3"
    chunker: ChunkerParams = DEFAULT_CHUNKER
    created: float = field(default_factory=time.time)

    @property
    def layout(self) -> ContentLayout:
        """Where this store's content objects live (depends on the format version)."""
        return ContentLayout(self.version)

    def to_json(self) -> bytes:
        d: dict[str, Any] = {
            "format": FORMAT_NAME,
            "version": self.version,
            "hash": self.hash,
            "chunker": self.chunker.to_dict(),
            "created": self.created,
        }
        return (json.dumps(d, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> StoreConfig:
        try:
            d = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise StoreConfigError(f"{where} is not valid JSON ({e}); restore it from a backup") from e
        if not isinstance(d, dict) or d.get("format") != FORMAT_NAME:
            raise StoreConfigError(f"{where} is not a casstore config (no \"format\": \"casstore\")")
        unknown = sorted(set(d) - _CONFIG_KEYS)
        if unknown:
            raise StoreConfigError(
                f"{where}: unknown setting(s) {', '.join(map(repr, unknown))}: this casstore "
                "cannot honour them. Upgrade casstore (pip install -U casstore) to open the store."
            )
        version = d.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise StoreConfigError(f"{where}: bad format version {version!r}")
        if version > FORMAT_VERSION:
            raise StoreConfigError(
                f"{where}: the store has format version {version}, this casstore reads up to "
                f"{FORMAT_VERSION}. Upgrade casstore (pip install -U casstore) to open it."
            )
        if d.get("hash") != "blake3":
            raise StoreConfigError(f"{where}: hash {d.get('hash')!r} is not supported (only 'blake3')")
        chunker = ChunkerParams.from_dict(d.get("chunker", {}), where)
        created = d.get("created", 0.0)
        if isinstance(created, bool) or not isinstance(created, (int, float)):
            raise StoreConfigError(f"{where}: \"created\" is {created!r}, not a time in seconds; restore it from a backup")
        return cls(version=version, hash="blake3", chunker=chunker, created=float(created))


#: every key of ``casstore.json``; any other is a setting this casstore cannot honour
_CONFIG_KEYS = frozenset({"format", "version", "hash", "chunker", "created"})


def read_config(backend: Backend) -> StoreConfig:
    """The config of an existing store; :class:`StoreConfigError` if there is none."""
    where = f"{backend.url}/{CONFIG_KEY}"
    try:
        return StoreConfig.from_json(backend.get(CONFIG_KEY), where)
    except ObjectNotFoundError as e:
        raise StoreConfigError(f"no casstore store at {backend.url!r} (no {CONFIG_KEY})") from e


def load_or_create_config(backend: Backend, wanted: ChunkerParams | None = None) -> StoreConfig:
    """Read the store's config, creating it (once, atomically) for a new store.

    ``wanted`` is the chunker for a *new* store; for an existing store it must match
    the stored one if given.
    """
    where = f"{backend.url}/{CONFIG_KEY}"
    for _ in range(2):
        try:
            cfg = StoreConfig.from_json(backend.get(CONFIG_KEY), where)
        except ObjectNotFoundError:
            new = StoreConfig(chunker=wanted or DEFAULT_CHUNKER)
            if backend.put_if_absent(CONFIG_KEY, new.to_json()):
                backend.flush()
                return new
            continue  # someone else created it first: read theirs
        if wanted is not None and wanted != cfg.chunker:
            raise StoreConfigError(
                f"{where}: the store was created with chunker {cfg.chunker}, not {wanted}; "
                "chunker settings are fixed when a store is created"
            )
        return cfg
    raise StoreConfigError(f"{where}: cannot read or create the store config")
