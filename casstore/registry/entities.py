"""What the registry hands out, in MLflow's shapes (``ModelVersion``, ``RegisteredModel``),
plus the history records (``AliasEvent``, ``RegistryEvent``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ModelVersion", "RegisteredModel", "AliasEvent", "RegistryEvent"]


@dataclass(frozen=True)
class ModelVersion:
    """One registered version: it pins ``model_digest`` forever."""

    name: str
    version: int
    model_digest: str
    creation_timestamp: int
    source: str
    run_id: str | None = None
    last_updated_timestamp: int | None = None
    description: str | None = None
    user_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)
    deleted: bool = False
    current_stage: str = "None"
    status: str = "READY"
    status_message: str | None = None
    run_link: str | None = None
    model_id: str | None = None

    @property
    def model_uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@dataclass(frozen=True)
class RegisteredModel:
    """A registered model: a name, its versions, tags, description and aliases."""

    name: str
    creation_timestamp: int
    last_updated_timestamp: int
    description: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)
    latest_versions: list[ModelVersion] = field(default_factory=list)
    deleted: bool = False


@dataclass(frozen=True)
class AliasEvent:
    """One move of an alias: it pointed at ``version`` (None: it was removed) from ``time`` (ms).

    ``reason`` says why an alias was removed by a deletion, such as
    ``"version 2 was deleted"`` (None for moves and for ``delete_registered_model_alias``)."""

    name: str
    alias: str
    seq: int
    version: int | None
    time: int
    user_id: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class RegistryEvent:
    """One entry of a registered model's append-only history (tag, description, deletion...)."""

    seq: int
    op: str
    time: int
    fields: dict[str, Any] = field(default_factory=dict)
    user_id: str | None = None
