"""The registry methods of ``casstore.Client`` (MLflow's ``MlflowClient`` names).

:class:`RegistryClient` is a mixin: the class it joins provides ``store`` (the
:class:`~casstore.runs.RunStore` of its tracking URI).

>>> import casstore
>>> c = casstore.Client("memory://doc-registry")
>>> c.create_registered_model("fraud").name
'fraud'
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from casstore.exceptions import InvalidInputError
from casstore.registry.entities import AliasEvent, ModelVersion, RegisteredModel, RegistryEvent
from casstore.registry.store import Registry, warn_damaged
from casstore.runs.search import PagedList, matches, parse_filter, parse_order_by, sort_items

if TYPE_CHECKING:
    from casstore.runs import RunStore

__all__ = ["RegistryClient", "register_model_version", "MODEL_ATTRIBUTES", "VERSION_ATTRIBUTES"]

#: attributes a registered-model search can name, and their types
MODEL_ATTRIBUTES = {"name": "str", "creation_timestamp": "num", "last_updated_timestamp": "num", "description": "str"}
#: attributes a model-version search can name, and their types
VERSION_ATTRIBUTES = {
    "name": "str",
    "version_number": "num",
    "run_id": "str",
    "source_path": "str",
    "source": "str",
    "model_digest": "str",
    "creation_timestamp": "num",
    "last_updated_timestamp": "num",
    "description": "str",
    "user_id": "str",
}


def register_model_version(
    store: RunStore,
    registry: Registry,
    source: str,
    name: str,
    *,
    run_id: str | None = None,
    tags: dict[str, str] | None = None,
    description: str | None = None,
) -> ModelVersion:
    """Register the model a URI names (``runs:/``, ``models:/``, ``cas:``) as a new version
    of ``name``; the version pins the model digest, checked to name a valid entry first."""
    from casstore.models.fetch import load_entry
    from casstore.models.uri import resolve_model_uri

    resolved = resolve_model_uri(source, store, registry)
    entry = load_entry(store, resolved.model_digest)
    return registry.create_version(
        name,
        resolved.model_digest,
        source=source,
        run_id=run_id or resolved.run_id or entry.run_id,
        tags=tags,
        description=description,
    )


def _model_value(m: RegisteredModel, entity: str, key: str) -> Any:
    if entity == "tags":
        return m.tags.get(key)
    if entity == "attributes":
        return getattr(m, key, None)
    return None


def _version_value(v: ModelVersion, entity: str, key: str) -> Any:
    if entity == "tags":
        return v.tags.get(key)
    if entity != "attributes":
        return None
    if key == "version_number":
        return v.version
    if key == "source_path":
        return v.source
    return getattr(v, key, None)


def _limit(max_results: int | None) -> int | None:
    if max_results is None:
        return None
    if not isinstance(max_results, int) or isinstance(max_results, bool) or max_results < 1:
        raise InvalidInputError(f"max_results must be a positive integer, got {max_results!r}")
    return max_results


class RegistryClient:
    """Registered models, versions, aliases and their history (MLflow's method names)."""

    store: RunStore

    @property
    def registry(self) -> Registry:
        """The registry on this client's store."""
        reg: Registry | None = self.__dict__.get("_registry")
        if reg is None or reg.backend is not self.store.backend:
            reg = Registry(self.store.backend, self.store.objects.layout)
            self.__dict__["_registry"] = reg
        return reg

    # ---- registered models ----------------------------------------------------------------

    def create_registered_model(
        self, name: str, tags: dict[str, str] | None = None, description: str | None = None,
        deployment_job_id: str | None = None,
    ) -> RegisteredModel:
        return self.registry.create_model(name, tags=tags, description=description)

    def get_registered_model(self, name: str) -> RegisteredModel:
        return self.registry.get_model(name)

    def search_registered_models(
        self,
        filter_string: str | None = None,
        max_results: int | None = 100,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList[RegisteredModel]:
        """One page of the registered models matching ``filter_string`` (``name LIKE 'fraud%'
        AND tags.team = 'risk'``); its ``token`` asks for the next page (``None`` on the last)."""
        comps = parse_filter(filter_string, MODEL_ATTRIBUTES)
        found = [m for m in self.registry.list_models(on_damaged=warn_damaged)
                 if matches(comps, functools.partial(_model_value, m))]
        keys = parse_order_by(order_by or ["name ASC"], MODEL_ATTRIBUTES)
        found = sort_items(found, keys, _model_value, MODEL_ATTRIBUTES)
        return PagedList.page(found, PagedList.offset_of(page_token), _limit(max_results))

    def update_registered_model(
        self, name: str, description: str | None = None, deployment_job_id: str | None = None
    ) -> RegisteredModel:
        self.registry.set_model_description(name, description)
        return self.registry.get_model(name)

    def rename_registered_model(self, name: str, new_name: str) -> RegisteredModel:
        """Refused: a registered model's name is the key its append-only history is kept
        under, so it cannot change."""
        self.registry.get_model(name)  # a missing model is reported as missing
        raise InvalidInputError(
            f"rename_registered_model: casstore does not rename registered models ({name!r} keeps its name, "
            f"its history is kept under it). Register the versions under {new_name!r} instead: "
            f"create_model_version({new_name!r}, source=version.source) for each version, then delete {name!r} if "
            "it is no longer wanted"
        )

    def delete_registered_model(self, name: str, reason: str = "") -> None:
        """Delete a registered model and its versions; recorded in its history."""
        self.registry.delete_model(name, reason)

    def set_registered_model_tag(self, name: str, key: str, value: Any) -> None:
        self.registry.set_model_tag(name, key, str(value))

    def delete_registered_model_tag(self, name: str, key: str) -> None:
        self.registry.delete_model_tag(name, key)

    def get_registered_model_history(self, name: str) -> list[RegistryEvent]:
        """The model's append-only history: tags, descriptions, deletions, re-creations."""
        return self.registry.history(name)

    # ---- versions -------------------------------------------------------------------------

    def create_model_version(
        self,
        name: str,
        source: str,
        run_id: str | None = None,
        tags: dict[str, str] | None = None,
        run_link: str | None = None,
        description: str | None = None,
        await_creation_for: int = 300,
        model_id: str | None = None,
    ) -> ModelVersion:
        """Register the model at ``source`` (a model URI) as the next version of ``name``."""
        return register_model_version(self.store, self.registry, source, name, run_id=run_id, tags=tags, description=description)

    def copy_model_version(self, src_model_uri: str, dst_name: str) -> ModelVersion:
        """Register the version ``src_model_uri`` names (``models:/<name>/<version>`` or
        ``models:/<name>@<alias>``) as the next version of ``dst_name`` (created if needed),
        with its tags and description; the copy pins the same model digest and its source is
        ``models:/<name>/<version>``."""
        from casstore.models.uri import resolve_model_uri

        if not isinstance(src_model_uri, str) or not src_model_uri.startswith("models:/"):
            raise InvalidInputError(
                f"copy_model_version copies a registered version, named by a models:/ URI "
                f"('models:/<name>/<version>' or 'models:/<name>@<alias>'), not {src_model_uri!r}: register a "
                "logged model with create_model_version or register_model instead")
        src = resolve_model_uri(src_model_uri, self.store, self.registry).version
        if src is None:  # models:/<model_id> names a logged model, not a registered version
            raise InvalidInputError(f"{src_model_uri!r} names a logged model, not a registered version: "
                                    "register it with register_model instead")
        return self.registry.create_version(dst_name, src.model_digest, source=src.model_uri, run_id=src.run_id,
                                            tags=dict(src.tags), description=src.description)

    def get_model_version(self, name: str, version: int | str) -> ModelVersion:
        return self.registry.get_version(name, version)

    def get_latest_versions(self, name: str, stages: list[str] | None = None) -> list[ModelVersion]:
        """The highest live version. Every version is in stage ``"None"`` (stages are not kept;
        aliases do their work), so asking for another stage is refused rather than answered
        with a version that was never put there."""
        others = sorted({str(s) for s in stages or []} - {"None", "none"})
        if others:
            raise InvalidInputError(
                f"get_latest_versions: casstore has no model stages (MLflow deprecated them), so no version is in "
                f"{others}. Load the version an alias points at instead: get_model_version_by_alias({name!r}, "
                "'<alias>') or 'models:/<name>@<alias>'"
            )
        return self.registry.get_model(name).latest_versions

    def search_model_versions(
        self,
        filter_string: str | None = None,
        max_results: int | None = 10000,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList[ModelVersion]:
        """One page (``token`` asks for the next) of the versions matching ``filter_string`` (``name = 'fraud' AND run_id = '...'``,
        ``model_digest = '...'``, ``tags.validated = 'yes'``); as MLflow orders them unless
        ``order_by`` says otherwise: the most recently updated first, then by name, then the
        newest version first."""
        comps = parse_filter(filter_string, VERSION_ATTRIBUTES)
        names = [c.value for c in comps if c.entity == "attributes" and c.key == "name" and c.op == "="]
        models = [str(names[0])] if names else [m.name for m in self.registry.list_models(on_damaged=warn_damaged)]
        found: list[ModelVersion] = []
        for name in models:
            try:
                versions = self.registry.list_versions(name)
            except FileNotFoundError:
                continue
            found.extend(v for v in versions if matches(comps, functools.partial(_version_value, v)))
        keys = parse_order_by(order_by or ["last_updated_timestamp DESC", "name ASC", "version_number DESC"], VERSION_ATTRIBUTES)
        found = sort_items(found, keys, _version_value, VERSION_ATTRIBUTES)
        return PagedList.page(found, PagedList.offset_of(page_token), _limit(max_results))

    def transition_model_version_stage(
        self, name: str, version: int | str, stage: str, archive_existing_versions: bool = False
    ) -> ModelVersion:
        """Refused: model stages (deprecated in MLflow) are not supported; aliases do their work."""
        self.registry.get_version(name, version)  # a missing version is reported as missing
        raise InvalidInputError(
            f"transition_model_version_stage: casstore has no model stages (MLflow deprecated them). Point an alias "
            f"at the version instead: set_registered_model_alias({name!r}, {stage.lower()!r}, {version!r}), then "
            f"load it as 'models:/{name}@{stage.lower()}'"
        )

    def update_model_version(self, name: str, version: int | str, description: str | None = None) -> ModelVersion:
        self.registry.set_version_description(name, version, description)
        return self.registry.get_version(name, version)

    def delete_model_version(self, name: str, version: int | str, reason: str = "") -> None:
        """Delete a version (recorded; its number is never reused)."""
        self.registry.delete_version(name, version, reason)

    def set_model_version_tag(
        self, name: str, version: int | str | None = None, key: str | None = None, value: Any = None, stage: str | None = None
    ) -> None:
        if version is None or key is None:
            raise InvalidInputError("set_model_version_tag needs a version and a key (stages are not supported)")
        self.registry.set_version_tag(name, version, key, str(value))

    def delete_model_version_tag(
        self, name: str, version: int | str | None = None, key: str | None = None, stage: str | None = None
    ) -> None:
        if version is None or key is None:
            raise InvalidInputError("delete_model_version_tag needs a version and a key (stages are not supported)")
        self.registry.delete_version_tag(name, version, key)

    def get_model_version_download_uri(self, name: str, version: int | str) -> str:
        """Where the version's model came from (its source URI)."""
        return self.registry.get_version(name, version).source

    # ---- aliases --------------------------------------------------------------------------

    def set_registered_model_alias(self, name: str, alias: str, version: int | str) -> None:
        self.registry.set_alias(name, alias, version)

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        self.registry.delete_alias(name, alias)

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        return self.registry.get_version_by_alias(name, alias)

    def get_registered_model_alias_history(self, name: str, alias: str | None = None) -> list[AliasEvent]:
        """Every move of ``alias`` (or of every alias of the model), oldest first."""
        return self.registry.alias_history(name, alias)
