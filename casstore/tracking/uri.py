"""Which store the tracking API talks to, and ``runs:/`` URIs.

The tracking URI is, in order: what :func:`set_tracking_uri` set, the environment
variable ``CASSTORE_TRACKING_URI``, MLflow's ``MLFLOW_TRACKING_URI`` (as the process had it
when casstore was imported: MLflow's ``set_tracking_uri`` sets it later in a process that
uses both), or ``./casstore``.
A relative local path is resolved against the current directory when the store is
used. Any fsspec URL works (``memory://x``, ``s3://bucket/prefix``, ``file:///abs/path``,
``file:./dir``). URIs of MLflow's servers and databases (``sqlite:``, ``postgresql:``,
``mysql:``, ``http(s):``, ``databricks``) are refused with a message saying what to use:
casstore has no server or database, its store is a directory or an object-store URL.

The registry lives in the tracking store (a version pins a model entry of that store),
so :func:`set_registry_uri` takes only a URI naming that same store.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from casstore._paths import clean_optional_path
from casstore.exceptions import InvalidInputError
from casstore.runs import RunStore, open_run_store
from casstore.runs.layout import check_run_id

if TYPE_CHECKING:
    from casstore.runs import RunHandle

__all__ = [
    "DEFAULT_TRACKING_URI",
    "check_servable",
    "TRACKING_URI_ENV",
    "set_tracking_uri",
    "get_tracking_uri",
    "is_tracking_uri_set",
    "set_registry_uri",
    "get_registry_uri",
    "resolve_store_uri",
    "get_store",
    "parse_runs_uri",
    "runs_uri",
]

DEFAULT_TRACKING_URI = "./casstore"
TRACKING_URI_ENV = "CASSTORE_TRACKING_URI"
#: MLflow's variable, honoured when ``CASSTORE_TRACKING_URI`` is unset
MLFLOW_TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
#: ... as the process had it when casstore was imported: MLflow's own ``set_tracking_uri``
#: writes that variable, and a script using both must not have casstore follow MLflow's
#: database
_MLFLOW_TRACKING_URI = os.environ.get(MLFLOW_TRACKING_URI_ENV) or None
#: schemes of MLflow's tracking servers and databases: casstore cannot serve them
_SERVER_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mssql", "http", "https", "databricks",
                   "databricks-uc", "uc")

_registry_uri: str | None = None

_tracking_uri: str | None = None
#: the stores used last are held open, the tracking and registry stores among them; one used
#: before them stays open only while something holds it (a run, a client) and is otherwise let
#: go with its threads and caches, so a process that goes through many stores (a test suite, a
#: sweep over stores) holds a few, not every one it ever opened
_RECENT_STORES = 4
_stores: OrderedDict[str, RunStore] = OrderedDict()
_open_stores: weakref.WeakValueDictionary[str, RunStore] = weakref.WeakValueDictionary()
_handles: dict[tuple[str, str], RunHandle] = {}
_lock = threading.RLock()


def check_servable(uri: str, where: str,
                   fix: str = "Set CASSTORE_TRACKING_URI or call set_tracking_uri with one") -> None:
    """Refuse the URI of an MLflow server or database, saying what to use instead."""
    scheme = uri.strip().partition(":")[0].lower().split("+", 1)[0]
    if scheme in _SERVER_SCHEMES and (":" in uri or scheme.startswith("databricks")):
        raise InvalidInputError(
            f"{where} {uri!r} names an MLflow tracking server or database, which casstore does not talk to: "
            "a casstore store is a directory or an object-store URL, with no server "
            f"(for example ./casstore, /data/store, s3://bucket/prefix). {fix}; to bring runs over from MLflow, run "
            f"`casstore import-mlflow --mlflow-uri {uri}`"
        )


def set_tracking_uri(uri: str | os.PathLike[str]) -> None:
    """Use the store at ``uri`` (a local path or any fsspec URL) from now on."""
    global _tracking_uri
    if isinstance(uri, os.PathLike):
        uri = os.fspath(uri)
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidInputError(f"tracking URI must be a non-empty string or path, got {uri!r}")
    check_servable(uri, "tracking URI")
    _tracking_uri = uri


def set_registry_uri(uri: str | os.PathLike[str]) -> None:
    """Name the registry's store: casstore keeps the registry in the tracking store, so
    ``uri`` must name that store (anything else is refused)."""
    global _registry_uri
    text = os.fspath(uri) if isinstance(uri, os.PathLike) else uri
    if not isinstance(text, str) or not text.strip():
        raise InvalidInputError(f"registry URI must be a non-empty string or path, got {uri!r}")
    check_servable(text, "registry URI")
    if resolve_store_uri(text) != resolve_store_uri(get_tracking_uri()):
        raise InvalidInputError(
            f"registry URI {text!r} is not the tracking store {get_tracking_uri()!r}: casstore keeps registered "
            "models in the store that holds their runs (a version pins a model of that store). "
            "Use set_tracking_uri to change both"
        )
    _registry_uri = text


def get_registry_uri() -> str:
    """The registry URI: as set by :func:`set_registry_uri`, else the tracking URI."""
    return _registry_uri if _registry_uri is not None else get_tracking_uri()


def get_tracking_uri() -> str:
    """The current tracking URI, as set (relative paths are resolved when the store is used)."""
    if _tracking_uri is not None:
        return _tracking_uri
    return os.environ.get(TRACKING_URI_ENV) or _MLFLOW_TRACKING_URI or DEFAULT_TRACKING_URI


def is_tracking_uri_set() -> bool:
    """Whether a tracking URI was set (by :func:`set_tracking_uri` or the environment)."""
    return _tracking_uri is not None or bool(os.environ.get(TRACKING_URI_ENV) or _MLFLOW_TRACKING_URI)


def _reset_tracking_uri() -> None:
    """Forget :func:`set_tracking_uri` and :func:`set_registry_uri` (tests)."""
    global _tracking_uri, _registry_uri
    _tracking_uri = None
    _registry_uri = None


def resolve_store_uri(uri: str | os.PathLike[str] | None = None) -> str:
    """The canonical form of a store URI: absolute for local paths and ``file://`` URLs."""
    uri = os.fspath(uri) if uri is not None else get_tracking_uri()
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidInputError(f"tracking URI must be a non-empty string or path, got {uri!r}")
    check_servable(uri, "tracking URI")
    if uri.startswith("file:") and not uri.startswith("file://"):
        return os.path.abspath(os.path.expanduser(uri[len("file:"):] or "."))
    if "://" not in uri:
        return os.path.abspath(os.path.expanduser(uri))
    scheme, _, rest = uri.partition("://")
    if scheme.lower() in ("file", "local"):
        return os.path.abspath(os.path.expanduser(rest or "/"))
    return uri


def get_store(uri: str | os.PathLike[str] | None = None, storage_options: dict[str, Any] | None = None) -> RunStore:
    """The run store at ``uri`` (default: the tracking URI), opened once per process while
    it is in use."""
    key = resolve_store_uri(uri)
    with _lock:
        store = _stores.get(key) or _open_stores.get(key)
        if store is None:
            store = _open_stores[key] = open_run_store(key, storage_options)
        _stores[key] = store
        _stores.move_to_end(key)
        while len(_stores) > _RECENT_STORES:
            _stores.popitem(last=False)
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
