"""The store's configuration object, ``casstore.json``: written once, versioned.

It fixes what every writer must agree on: the format version, the hash and the
chunker parameters. It is created with create-if-absent, so concurrent first
writers agree on one config; a store whose config this code cannot honour is
refused with :class:`StoreConfigError`.

The config checks itself: ``"b3"`` is the BLAKE3 of its other settings (as compact JSON
with sorted keys), checked whenever it is read, so a changed byte is a
:class:`StoreConfigError` that says so, never a setting silently taken. A config written
before it carried ``b3`` is read as it is; ``casstore upgrade`` adds it.

A store may say ``"layout": "packs"``: its chunks live in packs (see
:mod:`casstore.objects.packs`). Older casstore refuses that setting, as it refuses any
it does not know. New stores get format version 6; stores of versions 1 to 5 are read and
written in their own layout (see :mod:`casstore.objects.layout`,
:mod:`casstore.runs.batches` for the run records of version 4,
:mod:`casstore.runs.compact` for the sealed runs of version 5 and
:mod:`casstore.runs.index` for the time-ordered run entries of version 6), so older
casstore can still read them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from blake3 import blake3

from casstore.backend.base import Backend
from casstore.exceptions import ObjectNotFoundError, StoreConfigError
from casstore.objects.chunking import DEFAULT_CHUNKER, ChunkerParams
from casstore.objects.layout import ContentLayout

__all__ = [
    "CONFIG_KEY",
    "FORMAT_VERSION",
    "LAYOUTS",
    "LOCAL_LAYOUT",
    "StoreConfig",
    "default_layout",
    "load_or_create_config",
    "read_config",
]

CONFIG_KEY = "casstore.json"
FORMAT_NAME = "casstore"
#: the version of new stores, and the highest this casstore reads (it reads 1 to 5 too)
FORMAT_VERSION = 6
#: the content layouts: ``loose`` (one object per chunk, the default; not written into the
#: config, so older casstore reads such stores) and ``packs``
LAYOUTS = ("loose", "packs")
#: the content layout of a new store on this machine (a local directory, memory) when none
#: is asked for; remote stores get packs (see :func:`default_layout`)
LOCAL_LAYOUT = "loose"


def default_layout(backend: Backend) -> str:
    """The content layout a new store on ``backend`` gets when none is asked for (neither
    ``layout=`` nor ``CASSTORE_LAYOUT``): ``packs`` on a remote object store (S3, any remote
    fsspec file system), where every object costs a request, and :data:`LOCAL_LAYOUT` on a
    local disk and in memory. See docs/design.md ("Packs") for the figures behind it."""
    return LOCAL_LAYOUT if backend.local else "packs"


@dataclass(frozen=True)
class StoreConfig:
    version: int = FORMAT_VERSION
    hash: str = "blake3"
    chunker: ChunkerParams = DEFAULT_CHUNKER
    #: when the store was created, in seconds to the millisecond (so that every digit the
    #: config shows is one its check covers: a float of more digits has some that change nothing)
    created: float = field(default_factory=lambda: round(time.time(), 3))
    #: ``"loose"`` or ``"packs"`` (see :data:`LAYOUTS`)
    content_layout: str = "loose"
    #: whether the stored config carries its own check (``b3``); one written before does not
    checked: bool = field(default=True, compare=False)

    @property
    def layout(self) -> ContentLayout:
        """Where this store's content objects live (the format version and the layout)."""
        return ContentLayout(self.version, packed=self.content_layout == "packs")

    def to_json(self) -> bytes:
        d: dict[str, Any] = {
            "format": FORMAT_NAME,
            "version": self.version,
            "hash": self.hash,
            "chunker": self.chunker.to_dict(),
            "created": self.created,
        }
        if self.content_layout != "loose":
            d["layout"] = self.content_layout
        d["b3"] = _check_of(d)
        return (json.dumps(d, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> StoreConfig:
        try:
            d = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise StoreConfigError(f"{where} is not valid JSON ({e}); restore it from a backup") from e
        if not isinstance(d, dict):
            raise StoreConfigError(f"{where} is not a casstore config (not a JSON object)")
        check = d.pop(CHECK_KEY, None)
        if check is None:  # written before configs checked themselves, or its check's name damaged
            renamed = [k for k, v in d.items() if k not in _CONFIG_KEYS and isinstance(v, str) and len(v) == 64]
            if renamed:
                raise StoreConfigError(_damaged(where, f"its check field is damaged (named {renamed[0]!r})"))
        elif check != _check_of(d):
            raise StoreConfigError(_damaged(where, "its settings do not hash to the BLAKE3 it carries (\"b3\")"))
        if d.get("format") != FORMAT_NAME:
            raise StoreConfigError(f"{where} is not a casstore config (no \"format\": \"casstore\")")
        unknown = sorted(set(d) - _CONFIG_KEYS)
        if unknown:
            raise StoreConfigError(
                f"{where}: unknown setting(s) {', '.join(map(repr, unknown))}: this casstore "
                f"cannot honour them. {UPGRADE} to open the store."
            )
        version = d.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise StoreConfigError(f"{where}: bad format version {version!r}")
        if version > FORMAT_VERSION:
            raise StoreConfigError(
                f"{where}: the store has format version {version}, this casstore reads up to "
                f"{FORMAT_VERSION}. {UPGRADE} to open it."
            )
        if d.get("hash") != "blake3":
            raise StoreConfigError(f"{where}: hash {d.get('hash')!r} is not supported (only 'blake3')")
        chunker = ChunkerParams.from_dict(d.get("chunker", {}), where)
        created = d.get("created", 0.0)
        if isinstance(created, bool) or not isinstance(created, (int, float)):
            raise StoreConfigError(f"{where}: \"created\" is {created!r}, not a time in seconds; restore it from a backup")
        layout = d.get("layout", "loose")
        if layout not in LAYOUTS:
            raise StoreConfigError(
                f"{where}: content layout {layout!r} is not one this casstore knows ({', '.join(LAYOUTS)}). "
                f"{UPGRADE} to open the store."
            )
        return cls(version=version, hash="blake3", chunker=chunker, created=float(created), content_layout=layout,
                   checked=check is not None)


#: every key of ``casstore.json`` but its check; any other is a setting this casstore cannot honour
#: what to do with a store a newer casstore wrote (casstore installs from its repository)
UPGRADE = "Upgrade casstore (in its repository: update the checkout, then `pip install .`)"
_CONFIG_KEYS = frozenset({"format", "version", "hash", "chunker", "created", "layout"})
#: the config's own check: the BLAKE3 of its other settings
CHECK_KEY = "b3"


def _check_of(settings: dict[str, Any]) -> str:
    """The BLAKE3 (hex) of ``settings`` as compact JSON with sorted keys."""
    return blake3(json.dumps(settings, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _damaged(where: str, why: str) -> str:
    return (f"{where} is damaged: {why}, so some setting of the store may have changed. Nothing was read or "
            f"written. Restore {CONFIG_KEY} from a backup of the store, or copy it from another copy of the "
            "store (it is written when the store is created and stays the same); `casstore verify --all` then "
            "checks the rest")


def read_config(backend: Backend) -> StoreConfig:
    """The config of an existing store; :class:`StoreConfigError` if there is none."""
    where = f"{backend.url}/{CONFIG_KEY}"
    try:
        return StoreConfig.from_json(backend.get(CONFIG_KEY), where)
    except ObjectNotFoundError as e:
        raise StoreConfigError(
            f"no casstore store at {backend.url!r} (no {CONFIG_KEY}); check the store's URL or path (a store is "
            "created by the first run logged to it)"
        ) from e


def load_or_create_config(
    backend: Backend, wanted: ChunkerParams | None = None, layout: str | None = None, *, new_layout: str | None = None
) -> StoreConfig:
    """Read the store's config, creating it (once, atomically) for a new store.

    ``wanted`` is the chunker for a *new* store; for an existing store it must match
    the stored one if given. ``layout`` likewise (``"loose"`` or ``"packs"``, whose default
    chunker is :data:`~casstore.objects.packs.PACK_CHUNKER`). ``new_layout`` is the layout
    of a new store only, never checked against an existing one. A new store with neither
    gets :func:`default_layout`.
    """
    for given in (layout, new_layout):
        if given is not None and given not in LAYOUTS:
            raise StoreConfigError(f"content layout {given!r} is not one of {', '.join(LAYOUTS)}")
    where = f"{backend.url}/{CONFIG_KEY}"
    for _ in range(2):
        try:
            cfg = StoreConfig.from_json(backend.get(CONFIG_KEY), where)
        except ObjectNotFoundError:
            if (layout or new_layout or default_layout(backend)) == "packs":
                from casstore.objects.packs import PACK_CHUNKER

                new = StoreConfig(chunker=wanted or PACK_CHUNKER, content_layout="packs")
            else:
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
        if layout is not None and layout != cfg.content_layout:
            raise StoreConfigError(
                f"{where}: the store has the {cfg.content_layout!r} content layout, not {layout!r}; "
                + ("convert it with `casstore pack-store`" if layout == "packs" else "a packed store stays packed")
            )
        return cfg
    raise StoreConfigError(f"{where}: cannot read or create the store config")
