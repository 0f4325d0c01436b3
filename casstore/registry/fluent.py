"""``casstore.register_model``: register a logged model under a name, on the current store."""

from __future__ import annotations

from casstore.registry.client import register_model_version
from casstore.registry.entities import ModelVersion
from casstore.registry.store import Registry

__all__ = ["register_model"]


def register_model(
    model_uri: str, name: str, await_registration_for: int = 300, *, tags: dict[str, str] | None = None
) -> ModelVersion:
    """Register the model at ``model_uri`` (``runs:/``, ``models:/`` or ``cas:``) as the next
    version of ``name`` (created if needed). The version pins the model's digest for good.

    >>> mv = casstore.register_model(info.model_uri, "fraud")   # doctest: +SKIP
    >>> mv.version, mv.model_digest == info.model_digest          # doctest: +SKIP
    (1, True)
    """
    from casstore.models._context import current_store

    store = current_store()
    return register_model_version(store, Registry(store.backend, store.objects.layout), model_uri, name, tags=tags)
