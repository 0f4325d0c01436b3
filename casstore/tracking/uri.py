"""Which store the tracking API talks to, and ``runs:/`` URIs.

The tracking URI is, in order: what :func:`set_tracking_uri` set, the environment
variable ``CASSTORE_TRACKING_URI``, or ``./casstore``. A relative local path is
resolved against the current directory when the store is used. Any fsspec URL
works (``memory://x``, ``s3://bucket/prefix``, ``file:///abs/path``).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from casstore._paths import clean_optional_path
from casstore.exceptions import InvalidInputError
from casstore.runs import RunHandle, RunStore, open_run_store
from casstore.runs.layout import check_run_id

__all__ = [
    "DEFAULT_TRACKING_URI",
    "TRACKING_URI_ENV",
    "set_tracking_uri",
    "get_tracking_uri",
    "is_tracking_uri_set",
    "resolve_store_uri",
    "get_store",
    "parse_runs_uri",
    "runs_uri",
]

DEFAULT_TRACKING_URI = "./casstore"
TRACKING_URI_ENV = "CASSTORE_TRACKING_URI"

_tracking_uri: str | None = None
_stores: dict[str, RunStore] = {}
_handles: dict[tuple[str, str], RunHandle] = {}
_lock = threading.RLock()


def set_tracking_uri(uri: str | os.PathLike[str]) -> None:
    """Use the store at ``uri`` (a local path or any fsspec URL) from now on."""
    global _tracking_uri
    if isinstance(uri, os.PathLike):
        uri = os.fspath(uri)
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidInputError(f"tracking URI must be a non-empty string or path, got {uri!r}")
    _tracking_uri = uri


def get_tracking_uri() -> str:
    """The current tracking URI, as set (relative paths are resolved when the store is used)."""
    if _tracking_uri is not None:
        return _tracking_uri
    return os.environ.get(TRACKING_URI_ENV) or DEFAULT_TRACKING_URI


def is_tracking_uri_set() -> bool:
    return _tracking_uri is not None or bool(os.environ.get(TRACKING_URI_ENV))


def _reset_tracking_uri() -> None:
    """Forget :func:`set_tracking_uri` (tests)."""
    global _tracking_uri
    _tracking_uri = None


def resolve_store_uri(uri: str | os.PathLike[str] | None = None) -> str:
    """The canonical form of a store URI: absolute for local paths and ``file://`` URLs."""
    uri = os.fspath(uri) if uri is not None else get_tracking_uri()
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidInputError(f"tracking URI must be a non-empty string or path, got {uri!r}")
    if "://" not in uri:
        return os.path.abspath(os.path.expanduser(uri))
    scheme, _, rest = uri.partition("://")
    if scheme.lower() in ("file", "local"):
        return os.path.abspath(os.path.expanduser(rest or "/"))
    return uri


def get_store(uri: str | os.PathLike[str] | None = None, storage_options: dict[str, Any] | None = None) -> RunStore:
    """The run store at ``uri`` (default: the tracking URI), opened once per process."""
    key = resolve_store_uri(uri)
    with _lock:
        store = _stores.get(key)
        if store is None:
            store = open_run_store(key, storage_options)
            _stores[key] = store
        return store


def cached_handle(store: RunStore, run_id: str) -> RunHandle | None:
    with _lock:
        return _handles.get((store.url, run_id))


def remember_handle(store: RunStore, handle: RunHandle) -> RunHandle:
    with _lock:
        return _handles.setdefault((store.url, handle.run_id), handle)


def forget_handle(store: RunStore, run_id: str) -> None:
    with _lock:
        _handles.pop((store.url, run_id), None)


def runs_uri(run_id: str, path: str | None = None) -> str:
    """``runs:/<run_id>/<path>``."""
    p = clean_optional_path(path)
    return f"runs:/{run_id}/{p}" if p else f"runs:/{run_id}"


def parse_runs_uri(uri: str) -> tuple[str, str]:
    """Split ``runs:/<run_id>[/<path>]`` into the run id and the (checked) artifact path."""
    if not isinstance(uri, str) or not uri.startswith("runs:"):
        raise InvalidInputError(f"{uri!r} is not a runs URI; expected runs:/<run_id>/<artifact path>")
    rest = uri[len("runs:"):].lstrip("/")
    run_id, _, path = rest.partition("/")
    try:
        check_run_id(run_id)
    except InvalidInputError as e:
        raise InvalidInputError(f"{uri!r} is not a valid runs URI: {e}") from e
    return run_id, clean_optional_path(path)
