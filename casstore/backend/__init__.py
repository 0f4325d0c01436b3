"""Backends: key -> bytes on some storage, with atomic create-if-absent.

:func:`open_backend` turns a store URL into a backend: a plain path or
``file://`` URL is a :class:`LocalBackend`, ``memory://`` a :class:`MemoryBackend`,
``s3://`` the S3 backend (``pip install 'casstore[s3]'``), anything else that
fsspec knows the generic :class:`FsspecBackend`.
"""

from __future__ import annotations

import os
from typing import Any

from casstore._env import env_on
from casstore.backend.base import Backend, ObjectInfo, validate_key
from casstore.backend.fsspec import FsspecBackend, MemoryBackend
from casstore.backend.local import LocalBackend
from casstore.exceptions import InvalidInputError, StoreUnavailableError

__all__ = ["Backend", "ObjectInfo", "LocalBackend", "MemoryBackend", "FsspecBackend", "open_backend", "validate_key"]


def open_backend(url: str | os.PathLike[str], storage_options: dict[str, Any] | None = None, *, durable: bool | None = None) -> Backend:
    """Open the backend for a store URL or local path."""
    url = os.fspath(url)
    if not isinstance(url, str) or not url.strip():
        raise InvalidInputError(f"store URL must be a non-empty string or path, got {url!r}")
    opts = dict(storage_options or {})
    if durable is None:
        durable = env_on("CASSTORE_DURABLE")
    if "://" not in url:
        return LocalBackend(url, durable=durable)
    protocol, _, rest = url.partition("://")
    protocol = protocol.lower()
    if protocol in ("file", "local"):
        return LocalBackend(rest or "/", durable=durable)
    if protocol == "memory":
        return MemoryBackend(rest)
    if protocol in ("s3", "s3a"):
        from casstore.backend.s3 import S3Backend

        return S3Backend(rest, storage_options=opts)
    try:
        import fsspec

        fs, root = fsspec.core.url_to_fs(url, **opts)
    except ImportError as e:
        raise StoreUnavailableError(
            f"cannot open store {url!r}: the fsspec implementation for {protocol!r} is not installed ({e}). "
            "Install the package fsspec names for it."
        ) from e
    except (ValueError, OSError) as e:
        raise StoreUnavailableError(f"cannot open store {url!r}: {e}") from e
    return FsspecBackend(fs, root, url=url)
