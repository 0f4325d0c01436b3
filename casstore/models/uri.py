"""Model URIs: parsing, and resolving one to the model digest it names.

============================  =================================================
``runs:/<run_id>/<name>``     the model logged as ``<name>`` in that run
``models:/<name>/<version>``  a registered version (its pinned digest)
``models:/<name>@<alias>``    the version an alias points at now
``models:/<name>/latest``     the highest live version
``cas:<model_digest>``        the model entry with that digest, nothing else
``models:/<model_digest>``    the same (a logged model's ``model_id`` is its digest)
============================  =================================================

>>> parse_model_uri("models:/fraud@champion")
ModelURI(kind='models', name='fraud', alias='champion')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from casstore._paths import clean_artifact_path
from casstore.exceptions import InvalidInputError, ObjectNotFoundError, UnsafePathError
from casstore.objects.digest import check_digest, is_digest
from casstore.registry.layout import check_alias, check_model_name
from casstore.runs.layout import is_run_id

if TYPE_CHECKING:
    from casstore.registry.entities import ModelVersion
    from casstore.registry.store import Registry
    from casstore.runs import RunStore

__all__ = ["ModelURI", "Resolved", "parse_model_uri", "resolve_model_uri"]

_FORMS = "runs:/<run_id>/<name>, models:/<name>/<version>, models:/<name>@<alias>, models:/<name>/latest or cas:<model_digest>"


@dataclass(frozen=True)
class ModelURI:
    """A parsed model URI; which fields are set depends on ``kind``."""

    kind: str
    run_id: str | None = None
    path: str | None = None
    name: str | None = None
    version: int | None = None
    alias: str | None = None
    latest: bool = False
    digest: str | None = None

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if v not in (None, False) and k != "kind")
        return f"ModelURI(kind={self.kind!r}{', ' + fields if fields else ''})"


@dataclass(frozen=True)
class Resolved:
    """What a model URI resolved to: the model digest, and where it came from."""

    uri: str
    model_digest: str
    run_id: str | None = None
    path: str | None = None
    version: ModelVersion | None = None


def _bad(uri: object, why: str) -> InvalidInputError:
    return InvalidInputError(f"cannot read model URI {uri!r}: {why}. Use {_FORMS}")


def parse_model_uri(uri: object) -> ModelURI:
    """Parse a model URI (see the module docstring for the forms)."""
    if not isinstance(uri, str) or not uri.strip():
        raise _bad(uri, "it is not a non-empty string")
    text = uri.strip()
    if text.startswith("cas:"):
        return ModelURI("cas", digest=check_digest(text[4:].lstrip("/"), "model digest in the cas: URI"))
    if text.startswith("runs:/"):
        rest = text[len("runs:/"):].strip("/")
        run_id, _, path = rest.partition("/")
        if not is_run_id(run_id):
            raise _bad(uri, f"{run_id!r} is not a run id (32 lowercase hex characters)")
        if not path:
            raise _bad(uri, "it names a run but no model in it")
        try:
            path = clean_artifact_path(path, "model name")
        except UnsafePathError as e:
            raise _bad(uri, str(e)) from e
        return ModelURI("runs", run_id=run_id, path=path)
    if text.startswith("models:/"):
        rest = text[len("models:/"):].rstrip("/")
        if "/" in rest:
            name, _, ref = rest.rpartition("/")
            name = check_model_name(name)
            if ref.isdigit() and int(ref) >= 1:
                return ModelURI("models", name=name, version=int(ref))
            if ref.lower() == "latest":
                return ModelURI("models", name=name, latest=True)
            raise _bad(uri, f"{ref!r} is neither a version number nor 'latest' (stages are not supported; use aliases)")
        if "@" in rest:
            name, _, alias = rest.rpartition("@")
            return ModelURI("models", name=check_model_name(name), alias=check_alias(alias))
        if is_digest(rest):  # MLflow 3's models:/<model_id>: a logged model's id is its digest
            return ModelURI("cas", digest=rest)
        raise _bad(uri, "a models:/ URI needs a version, 'latest' or an alias after the name")
    raise _bad(uri, "unknown scheme")


def resolve_model_uri(uri: str, store: RunStore, registry: Registry | None = None) -> Resolved:
    """The model digest ``uri`` names on ``store``.

    ``runs:/`` reads the run's model reference (from the verified manifest of a sealed
    run); ``models:/`` reads the registry version's pinned digest; ``cas:`` is taken as given.
    """
    p = parse_model_uri(uri)
    if p.kind == "cas" and p.digest is not None:
        return Resolved(uri, p.digest)
    if p.kind == "runs" and p.run_id is not None and p.path is not None:
        run = store.get_run(p.run_id)
        ref = run.models.get(p.path)
        if ref is None:
            logged = sorted(run.models) or ["(none)"]
            raise ObjectNotFoundError(f"run {p.run_id} has no model named {p.path!r}; its models: {', '.join(logged)}")
        return Resolved(uri, ref.digest, run_id=p.run_id, path=p.path)
    if registry is None:
        from casstore.registry.store import Registry

        registry = Registry(store.backend, store.objects.layout)
    name = p.name or ""
    if p.version is not None:
        mv = registry.get_version(name, p.version)
    elif p.alias is not None:
        mv = registry.get_version_by_alias(name, p.alias)
    else:
        mv = registry.latest_version(name)
    return Resolved(uri, mv.model_digest, run_id=mv.run_id, path=None, version=mv)
