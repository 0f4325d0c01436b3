"""The tracking API: MLflow's fluent functions and client over the runs layer.

Its names are loaded on first use (PEP 562), so importing a submodule such as
``casstore.tracking.uri`` does not load the client and the fluent API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from casstore._lazy import lazy_getattr

_ENTITIES = ("FileInfo", "Metric", "Param", "Run", "RunData", "RunInfo", "RunStatus", "RunTag", "ViewType")
_URI = ("get_tracking_uri", "set_tracking_uri", "is_tracking_uri_set", "set_registry_uri", "get_registry_uri")
_CLIENT = ("Client", "MlflowClient", "TrackingClient")

if TYPE_CHECKING:  # explicit re-exports for type checkers; loaded lazily at run time
    from casstore.tracking.client import Client as Client, MlflowClient as MlflowClient, TrackingClient as TrackingClient
    from casstore.tracking.entities import (
        FileInfo as FileInfo,
        Metric as Metric,
        Param as Param,
        Run as Run,
        RunData as RunData,
        RunInfo as RunInfo,
        RunStatus as RunStatus,
        RunTag as RunTag,
        ViewType as ViewType,
    )
    from casstore.tracking.fluent import *  # noqa: F403
    from casstore.tracking.fluent import ActiveRun as ActiveRun
    from casstore.tracking.uri import (
        get_registry_uri as get_registry_uri,
        get_tracking_uri as get_tracking_uri,
        is_tracking_uri_set as is_tracking_uri_set,
        set_registry_uri as set_registry_uri,
        set_tracking_uri as set_tracking_uri,
    )
else:
    _load = lazy_getattr(
        globals(),
        {
            **dict.fromkeys(_CLIENT, "casstore.tracking.client"),
            **dict.fromkeys(_ENTITIES, "casstore.tracking.entities"),
            **dict.fromkeys(_URI, "casstore.tracking.uri"),
        },
        default="casstore.tracking.fluent",
    )

    def __getattr__(name: str) -> Any:
        if name == "__all__":
            from casstore.tracking.fluent import __all__ as fluent_all

            globals()["__all__"] = names = [*fluent_all, *_CLIENT, "ActiveRun", *_ENTITIES, *_URI]
            return names
        return _load(name)
