"""The model registry: names -> versions, each pinning a model digest forever.

See ``store.py`` for how versions are numbered without a lock server, and
docs/design.md ("Registry") for the layout on the store.
"""

from __future__ import annotations

from casstore.registry.entities import AliasEvent, ModelVersion, RegisteredModel, RegistryEvent
from casstore.registry.store import Registry

__all__ = ["Registry", "ModelVersion", "RegisteredModel", "AliasEvent", "RegistryEvent"]
