"""The model registry over a backend: names -> versions pinned to model digests.

Every write is a create-if-absent of a new object; nothing is ever rewritten:

- a version is ``versions/<n>``, created once with ``n`` = highest existing + 1; a
  writer that loses the race for ``n`` lists again and tries the next number, so
  concurrent registrations (threads, processes, machines) get distinct, gap-free
  numbers with no lock server;
- alias moves, tags, descriptions and deletions are appended to histories the
  same way, and the current state is the fold of the history.

A deleted version keeps its number: numbers are never reused, so
``models:/<name>/<n>`` names the same bytes for as long as it resolves at all.
"""

from __future__ import annotations

import getpass
import random
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from casstore.backend.base import Backend
from casstore.exceptions import (
    INVALID_PARAMETER_VALUE,
    DamagedRecordWarning,
    CorruptRecordError,
    InvalidInputError,
    ObjectNotFoundError,
    ResourceAlreadyExistsError,
    StoreUnavailableError,
)
from casstore.runs.records import decode_record, encode_record
from casstore.objects.config import read_config
from casstore.objects.digest import check_digest, is_digest
from casstore.objects.layout import ContentLayout
from casstore.registry import layout as L
from casstore.registry.entities import AliasEvent, ModelVersion, RegisteredModel, RegistryEvent

__all__ = ["Registry", "MAX_ATTEMPTS"]

RECORD_VERSION = 1
#: how many times a writer retries a create-if-absent it lost before giving up
MAX_ATTEMPTS = 200
MAX_TAG_KEY = 250
MAX_TAG_VALUE = 5000


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def _removal_reason(what: str, reason: object) -> str:
    """The reason recorded for an alias removed by a deletion: what was deleted, and why."""
    return f"{what}: {reason}" if reason else what


def _check_tag(key: object, value: object = "") -> tuple[str, str]:
    if not isinstance(key, str) or not key or len(key) > MAX_TAG_KEY:
        raise InvalidInputError(f"tag key must be a non-empty string of at most {MAX_TAG_KEY} characters, got {key!r}")
    if not isinstance(value, str):
        value = str(value)
    if len(value) > MAX_TAG_VALUE:
        raise InvalidInputError(f"tag {key!r}: value is longer than {MAX_TAG_VALUE} characters")
    return key, value


def _check_tags(tags: object) -> dict[str, str]:
    if tags is None:
        return {}
    if not isinstance(tags, dict):
        raise InvalidInputError(f"tags must be a dict of str to str, got {type(tags).__name__}")
    return dict(_check_tag(k, v) for k, v in tags.items())


@dataclass
class _State:
    """A registered model's state: the fold of its event history."""

    name: str
    created: int
    deleted: bool = False
    updated: int = 0
    description: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    deleted_versions: set[int] = field(default_factory=set)
    #: per version, tag changes in order: (key, value), value None for a deletion
    version_tag_ops: dict[int, list[tuple[str, str | None]]] = field(default_factory=dict)
    version_desc: dict[int, str | None] = field(default_factory=dict)
    version_updated: dict[int, int] = field(default_factory=dict)


class Registry:
    """Registered models, versions, aliases and their histories on one store.

    ``layout`` says where the store keeps model entries; by default it is read from the
    store's config when first needed."""

    def __init__(self, backend: Backend, layout: ContentLayout | None = None) -> None:
        self.backend = backend
        self._layout = layout

    @property
    def layout(self) -> ContentLayout:
        if self._layout is None:
            self._layout = read_config(self.backend).layout
        return self._layout

    # ---- low-level records ------------------------------------------------------------

    def _get(self, key: str, what: str) -> dict[str, Any]:
        rec = decode_record(self.backend.get(key), f"{what} ({key})")
        if not isinstance(rec.get("v"), int):
            raise CorruptRecordError(f"{what} ({key}) is not a registry record; the store may be damaged")
        if rec["v"] > RECORD_VERSION:
            raise CorruptRecordError(f"{what} ({key}) has format version {rec['v']}; upgrade casstore to read it")
        return rec

    def _seqs(self, prefix: str) -> list[int]:
        out = []
        for k in self.backend.list(prefix):
            rest = k[len(prefix):]
            if "/" in rest:
                continue
            n = L.parse_seq(k)
            if n is not None:
                out.append(n)
        return sorted(out)

    def _create_next(self, prefix: str, build: Callable[[int], dict[str, Any]], what: str) -> int:
        """Create ``prefix/<n>`` for the lowest free ``n`` above every existing one;
        retry on a lost race. Returns ``n``."""
        for attempt in range(MAX_ATTEMPTS):
            seqs = self._seqs(prefix)
            n = (seqs[-1] if seqs else 0) + 1
            if self.backend.put_if_absent(prefix + L.seq_name(n), encode_record(build(n))):
                return n
            time.sleep(random.uniform(0, 0.002 * min(attempt + 1, 20)))
        raise StoreUnavailableError(
            f"could not record the next {what} after {MAX_ATTEMPTS} attempts: too many concurrent writers "
            f"on {self.backend.url}. Retry the call."
        )

    def _append_event(self, name: str, op: str, **fields: Any) -> int:
        base = {"v": RECORD_VERSION, "op": op, "time": _now_ms(), "user": _user(), **fields}
        return self._create_next(L.events_prefix(name), lambda n: base, f"history entry of model {name!r}")

    def _events(self, name: str) -> list[RegistryEvent]:
        prefix = L.events_prefix(name)
        out = []
        for n in self._seqs(prefix):
            rec = self._get(prefix + L.seq_name(n), f"history entry {n} of registered model {name!r}")
            op, t = rec.get("op"), rec.get("time")
            if not isinstance(op, str) or not isinstance(t, int):
                raise CorruptRecordError(f"history entry {n} of registered model {name!r} is malformed: {rec!r}")
            fields = {k: v for k, v in rec.items() if k not in ("v", "op", "time", "user")}
            out.append(RegistryEvent(n, op, t, fields, rec.get("user")))
        return out

    # ---- state ------------------------------------------------------------------------

    def _model_record(self, name: str) -> dict[str, Any] | None:
        try:
            rec = self._get(L.model_key(name), f"registered model {name!r}")
        except ObjectNotFoundError:
            return None
        if rec.get("name") != name:
            raise CorruptRecordError(f"registered model record for {name!r} names {rec.get('name')!r}; the store is damaged")
        return rec

    def _state(self, name: str, *, include_deleted: bool = False) -> _State:
        L.check_model_name(name)
        rec = self._model_record(name)
        if rec is None:
            raise ObjectNotFoundError(f"no registered model named {name!r}; register one with casstore.register_model")
        created = int(rec.get("created", 0))
        st = _State(name=name, created=created, updated=created)
        for ev in self._events(name):
            self._apply(st, ev)
        if st.deleted and not include_deleted:
            raise ObjectNotFoundError(f"registered model {name!r} was deleted (see its history with Client().get_registered_model_history)")
        return st

    @staticmethod
    def _apply(st: _State, ev: RegistryEvent) -> None:
        f = ev.fields
        st.updated = max(st.updated, ev.time)
        ver = f.get("version")
        if ev.op == "delete_model":
            st.deleted = True
            st.deleted_versions.update(range(1, int(f.get("max_version", 0)) + 1))
        elif ev.op == "create_model":
            # re-created after a deletion: a new model under the old name, created now
            st.deleted = False
            st.created = ev.time
            st.tags, st.description = {}, None
        elif ev.op == "set_tag":
            st.tags[str(f.get("key"))] = str(f.get("value"))
        elif ev.op == "delete_tag":
            st.tags.pop(str(f.get("key")), None)
        elif ev.op == "set_description":
            st.description = f.get("description")
        elif isinstance(ver, int):
            st.version_updated[ver] = ev.time
            if ev.op == "delete_version":
                st.deleted_versions.add(ver)
            elif ev.op == "set_version_tag":
                st.version_tag_ops.setdefault(ver, []).append((str(f.get("key")), str(f.get("value"))))
            elif ev.op == "delete_version_tag":
                st.version_tag_ops.setdefault(ver, []).append((str(f.get("key")), None))
            elif ev.op == "set_version_description":
                st.version_desc[ver] = f.get("description")

    def _version_numbers(self, name: str) -> list[int]:
        return self._seqs(L.versions_prefix(name))

    def _version_record(self, name: str, version: int) -> dict[str, Any]:
        key = L.version_key(name, version)
        try:
            rec = self._get(key, f"version {version} of registered model {name!r}")
        except ObjectNotFoundError as e:
            raise ObjectNotFoundError(f"registered model {name!r} has no version {version}") from e
        if rec.get("name") != name or rec.get("version") != version or not is_digest(rec.get("model_digest")):
            raise CorruptRecordError(f"version record {key} is malformed or does not match its name; the store is damaged")
        return rec

    def _version(self, st: _State, rec: dict[str, Any], aliases: dict[str, int]) -> ModelVersion:
        n = int(rec["version"])
        tags = {str(k): str(v) for k, v in (rec.get("tags") or {}).items()}
        for key, value in st.version_tag_ops.get(n, []):
            if value is None:
                tags.pop(key, None)
            else:
                tags[key] = value
        created = int(rec.get("created", 0))
        return ModelVersion(
            name=st.name,
            version=n,
            model_digest=rec["model_digest"],
            creation_timestamp=created,
            last_updated_timestamp=max(created, st.version_updated.get(n, 0)),
            source=str(rec.get("source") or f"cas:{rec['model_digest']}"),
            run_id=rec.get("run_id"),
            description=st.version_desc.get(n, rec.get("description")),
            user_id=rec.get("user"),
            tags=tags,
            aliases=sorted(a for a, v in aliases.items() if v == n),
            deleted=n in st.deleted_versions,
        )

    def _alias_histories(self, name: str) -> dict[str, list[AliasEvent]]:
        prefix = L.aliases_prefix(name)
        dirs: dict[str, list[int]] = {}
        for k in self.backend.list(prefix):
            akey, _, seq = k[len(prefix):].partition("/")
            if seq.isdigit():
                dirs.setdefault(akey, []).append(int(seq))
        out: dict[str, list[AliasEvent]] = {}
        for akey, seqs in dirs.items():
            events = []
            for n in sorted(seqs):
                rec = self._get(f"{prefix}{akey}/{L.seq_name(n)}", f"alias record of registered model {name!r}")
                alias, ver = rec.get("alias"), rec.get("version")
                if not isinstance(alias, str) or not (ver is None or isinstance(ver, int)):
                    raise CorruptRecordError(f"alias record {prefix}{akey}/{n} is malformed: {rec!r}")
                reason = rec.get("reason")
                events.append(AliasEvent(name, alias, n, ver, int(rec.get("time", 0)), rec.get("user"),
                                         None if reason is None else str(reason)))
            if events:
                out[events[-1].alias] = events
        return out

    def _aliases(self, st: _State) -> dict[str, int]:
        out = {}
        for alias, events in self._alias_histories(st.name).items():
            v = events[-1].version
            if v is not None and v not in st.deleted_versions:
                out[alias] = v
        return out

    # ---- registered models ------------------------------------------------------------

    def create_model(self, name: str, tags: dict[str, str] | None = None, description: str | None = None,
                     *, exist_ok: bool = False) -> RegisteredModel:
        """Create a registered model. An existing one is an error unless ``exist_ok``;
        a deleted one is created anew (its old version numbers stay taken)."""
        L.check_model_name(name)
        tags = _check_tags(tags)
        if description is not None and not isinstance(description, str):
            raise InvalidInputError(f"description must be a string, got {type(description).__name__}")
        rec = {"v": RECORD_VERSION, "name": name, "created": _now_ms(), "user": _user()}
        created = self.backend.put_if_absent(L.model_key(name), encode_record(rec))
        if not created:
            st = self._state(name, include_deleted=True)
            if not st.deleted:
                if exist_ok:
                    return self.get_model(name)
                raise ResourceAlreadyExistsError(f"registered model {name!r} already exists; register a new version of it instead")
            self._append_event(name, "create_model")
        if description is not None:
            self._append_event(name, "set_description", description=description)
        for k, v in tags.items():
            self._append_event(name, "set_tag", key=k, value=v)
        return self.get_model(name)

    def get_model(self, name: str) -> RegisteredModel:
        st = self._state(name)
        return self._model_view(st)

    def _model_view(self, st: _State) -> RegisteredModel:
        aliases = self._aliases(st)
        live = [n for n in self._version_numbers(st.name) if n not in st.deleted_versions]
        latest = [self._version(st, self._version_record(st.name, live[-1]), aliases)] if live else []
        updated = max([st.updated] + [v.creation_timestamp for v in latest])
        return RegisteredModel(
            name=st.name,
            creation_timestamp=st.created,
            last_updated_timestamp=updated,
            description=st.description,
            tags=dict(st.tags),
            aliases=aliases,
            latest_versions=latest,
            deleted=st.deleted,
        )

    def model_names(self, *, on_damaged: Callable[[str], None] | None = None) -> list[str]:
        """Names of every registered model ever created (deleted ones included). A model
        record that fails its check raises, or with ``on_damaged`` is left out and named to it."""
        names = []
        for k in self.backend.list(L.REGISTRY_PREFIX):
            parts = k.split("/")
            if len(parts) == 3 and parts[2] == "model":
                try:
                    rec = self._get(k, f"registered model record {k}")
                except CorruptRecordError as e:
                    if on_damaged is None:
                        raise
                    on_damaged(_skipped(f"a registered model (its record {k})", e))
                    continue
                if isinstance(rec.get("name"), str):
                    names.append(rec["name"])
        return sorted(names)

    def list_models(self, *, include_deleted: bool = False,
                    on_damaged: Callable[[str], None] | None = None) -> list[RegisteredModel]:
        """Every registered model. One whose records fail their checks raises
        :class:`CorruptRecordError`; with ``on_damaged`` (listings, searches: e.g.
        :func:`warn_damaged`) it is left out and named to it (a sentence saying what is
        damaged and what to do), and the others are listed."""
        out = []
        for name in self.model_names(on_damaged=on_damaged):
            try:
                st = self._state(name, include_deleted=True)
            except CorruptRecordError as e:
                if on_damaged is None:
                    raise
                on_damaged(_skipped(f"registered model {name!r}", e))
                continue
            if include_deleted or not st.deleted:
                out.append(self._model_view(st))
        return out

    def delete_model(self, name: str, reason: str = "") -> None:
        """Delete a registered model and all its versions, as a recorded event; every
        alias it had is recorded as removed in that alias's history."""
        st = self._state(name)
        nums = self._version_numbers(name)
        live = set(nums) - st.deleted_versions
        why = _removal_reason(f"registered model {name!r} was deleted", reason)
        self._unset_aliases(name, live, why)
        self._append_event(name, "delete_model", reason=str(reason), max_version=nums[-1] if nums else 0)
        self._unset_aliases(name, live, why)

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        key, value = _check_tag(key, value)
        self._state(name)
        self._append_event(name, "set_tag", key=key, value=value)

    def delete_model_tag(self, name: str, key: str) -> None:
        key, _ = _check_tag(key)
        if key in self._state(name).tags:  # as MLflow: deleting a tag that is not there does nothing
            self._append_event(name, "delete_tag", key=key)

    def set_model_description(self, name: str, description: str | None) -> None:
        if description is not None and not isinstance(description, str):
            raise InvalidInputError(f"description must be a string, got {type(description).__name__}")
        self._state(name)
        self._append_event(name, "set_description", description=description)

    def history(self, name: str) -> list[RegistryEvent]:
        """The registered model's append-only history (tags, descriptions, deletions...)."""
        self._state(name, include_deleted=True)
        return self._events(name)

    # ---- versions ---------------------------------------------------------------------

    def create_version(
        self,
        name: str,
        model_digest: str,
        *,
        source: str = "",
        run_id: str | None = None,
        tags: dict[str, str] | None = None,
        description: str | None = None,
    ) -> ModelVersion:
        """Register a new version of ``name`` pinning ``model_digest`` (the model is created
        if needed). The number is the next free one; the record is never rewritten."""
        L.check_model_name(name)
        model_digest = check_digest(model_digest, "model digest")
        tags = _check_tags(tags)
        if description is not None and not isinstance(description, str):
            raise InvalidInputError(f"description must be a string, got {type(description).__name__}")
        self.create_model(name, exist_ok=True)
        # freshen the pinned entry: gc keeps what a new record references (docs/design.md)
        self.backend.touch(self.layout.model_key(model_digest))
        created = _now_ms()

        def build(n: int) -> dict[str, Any]:
            return {
                "v": RECORD_VERSION,
                "name": name,
                "version": n,
                "model_digest": model_digest,
                "source": source or f"cas:{model_digest}",
                "run_id": run_id,
                "created": created,
                "user": _user(),
                "tags": tags,
                "description": description,
            }

        n = self._create_next(L.versions_prefix(name), build, f"version of model {name!r}")
        return self.get_version(name, n)

    def get_version(self, name: str, version: int | str, *, include_deleted: bool = False) -> ModelVersion:
        n = L.check_version(version)
        st = self._state(name, include_deleted=include_deleted)
        rec = self._version_record(name, n)
        mv = self._version(st, rec, self._aliases(st))
        if mv.deleted and not include_deleted:
            raise ObjectNotFoundError(f"version {n} of registered model {name!r} was deleted")
        return mv

    def list_versions(self, name: str, *, include_deleted: bool = False) -> list[ModelVersion]:
        st = self._state(name, include_deleted=include_deleted)
        aliases = self._aliases(st)
        out = []
        for n in self._version_numbers(name):
            mv = self._version(st, self._version_record(name, n), aliases)
            if include_deleted or not mv.deleted:
                out.append(mv)
        return out

    def latest_version(self, name: str) -> ModelVersion:
        st = self._state(name)
        live = [n for n in self._version_numbers(name) if n not in st.deleted_versions]
        if not live:
            raise ObjectNotFoundError(f"registered model {name!r} has no versions")
        return self._version(st, self._version_record(name, live[-1]), self._aliases(st))

    def delete_version(self, name: str, version: int | str, reason: str = "") -> None:
        """Delete a version, as a recorded event; its number is never reused. An alias
        pointing at it is recorded as removed in that alias's history."""
        mv = self.get_version(name, version)
        why = _removal_reason(f"version {mv.version} was deleted", reason)
        self._unset_aliases(name, {mv.version}, why)
        self._append_event(name, "delete_version", version=mv.version, reason=str(reason))
        self._unset_aliases(name, {mv.version}, why)

    def set_version_tag(self, name: str, version: int | str, key: str, value: str) -> None:
        key, value = _check_tag(key, value)
        mv = self.get_version(name, version)
        self._append_event(name, "set_version_tag", version=mv.version, key=key, value=value)

    def delete_version_tag(self, name: str, version: int | str, key: str) -> None:
        key, _ = _check_tag(key)
        mv = self.get_version(name, version)
        if key in mv.tags:  # as MLflow: deleting a tag that is not there does nothing
            self._append_event(name, "delete_version_tag", version=mv.version, key=key)

    def set_version_description(self, name: str, version: int | str, description: str | None) -> None:
        if description is not None and not isinstance(description, str):
            raise InvalidInputError(f"description must be a string, got {type(description).__name__}")
        mv = self.get_version(name, version)
        self._append_event(name, "set_version_description", version=mv.version, description=description)

    # ---- aliases ----------------------------------------------------------------------

    def set_alias(self, name: str, alias: str, version: int | str) -> None:
        """Point ``alias`` at ``version`` (appends to the alias's history).

        A deletion of the version by another writer meanwhile is an
        :class:`ObjectNotFoundError`, the alias's removal recorded: the deletion removes the
        aliases it finds after its event, and this finds an event that came first."""
        alias = L.check_alias(alias)
        mv = self.get_version(name, version)
        self._append_alias(name, alias, mv.version)
        if mv.version in self._state(name, include_deleted=True).deleted_versions:
            self._unset_aliases(name, {mv.version}, f"version {mv.version} was deleted while the alias was set")
            raise ObjectNotFoundError(
                f"version {mv.version} of registered model {name!r} was deleted by another writer while alias "
                f"{alias!r} was being set; the alias was not set (its history records the removal). "
                f"Choose a live version: `casstore models versions {name}`"
            )

    def delete_alias(self, name: str, alias: str) -> None:
        alias = L.check_alias(alias)
        st = self._state(name)
        if alias not in self._aliases(st):
            return  # as MLflow: deleting an alias that is not set does nothing (cleanup code runs it again)
        self._append_alias(name, alias, None)

    def _append_alias(self, name: str, alias: str, version: int | None, reason: str | None = None) -> None:
        rec: dict[str, Any] = {"v": RECORD_VERSION, "alias": alias, "version": version, "time": _now_ms(), "user": _user()}
        if reason is not None:
            rec["reason"] = reason
        self._create_next(L.alias_prefix(name, alias), lambda n: rec, f"move of alias {alias!r} of model {name!r}")

    def _unset_aliases(self, name: str, versions: set[int], reason: str) -> None:
        """Record the removal (``version: None``, with ``reason``) of every alias whose
        history ends at one of ``versions``.

        A deletion calls this before its event, so that a crash between the two leaves
        the alias removed on the record rather than silently unresolvable, and again
        after it, for an alias moved onto the version in between."""
        for alias, events in self._alias_histories(name).items():
            v = events[-1].version
            if v is not None and v in versions:
                self._append_alias(name, alias, None, reason)

    def get_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        alias = L.check_alias(alias)
        st = self._state(name)
        aliases = self._aliases(st)
        if alias not in aliases:
            # MLflow's code for a missing alias (a missing model or version is RESOURCE_DOES_NOT_EXIST)
            raise ObjectNotFoundError(f"registered model {name!r} has no alias {alias!r} (set one with set_registered_model_alias)",
                                      error_code=INVALID_PARAMETER_VALUE)
        return self._version(st, self._version_record(name, aliases[alias]), aliases)

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasEvent]:
        """Every move of ``alias`` (or of every alias), oldest first."""
        self._state(name, include_deleted=True)
        hist = self._alias_histories(name)
        if alias is not None:
            return list(hist.get(L.check_alias(alias), []))
        events: Iterable[AliasEvent] = (e for evs in hist.values() for e in evs)
        return sorted(events, key=lambda e: (e.time, e.alias, e.seq))

    def versions_pinning(self, model_digest: str) -> list[ModelVersion]:
        """Every live version (of any model) that pins ``model_digest``."""
        model_digest = check_digest(model_digest, "model digest")
        out: list[ModelVersion] = []
        for rm in self.list_models():
            out.extend(v for v in self.list_versions(rm.name) if v.model_digest == model_digest)
        return out



def _skipped(what: str, e: CorruptRecordError) -> str:
    return (f"{what} is skipped: it cannot be read ({e}). Restore its damaged records from a backup "
            "(`casstore verify --all` lists them)")


def warn_damaged(why: str) -> None:
    """Say, as a :class:`DamagedRecordWarning`, that a listing left out what ``why`` names."""
    warnings.warn(DamagedRecordWarning(why), stacklevel=4)
