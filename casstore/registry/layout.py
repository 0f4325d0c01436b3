"""Where the registry lives on the store (see docs/design.md, "Registry").

::

    registry/<model_key>/model                     {v, name, created}                 create-if-absent
    registry/<model_key>/versions/<n>              the version record, pinned digest   create-if-absent, never rewritten
    registry/<model_key>/aliases/<alias_key>/<seq> {v, alias, version | None, time[, reason]}  append-only alias history
    registry/<model_key>/events/<seq>              {v, op, time, ...}                 append-only: tags, descriptions,
                                                                                      deletions, re-creations

``<model_key>``/``<alias_key>`` are :func:`casstore.runs.layout.name_key` of the name;
``<n>`` and ``<seq>`` are decimal, zero-padded to 10 digits so listings sort.
"""

from __future__ import annotations

import re

from casstore.exceptions import InvalidInputError
from casstore.runs.layout import name_key

__all__ = [
    "REGISTRY_PREFIX",
    "model_prefix",
    "model_key",
    "version_key",
    "versions_prefix",
    "alias_prefix",
    "aliases_prefix",
    "events_prefix",
    "seq_name",
    "parse_seq",
    "check_model_name",
    "check_alias",
    "check_version",
]

REGISTRY_PREFIX = "registry/"
MAX_MODEL_NAME_LEN = 256


def model_prefix(name: str) -> str:
    return f"{REGISTRY_PREFIX}{name_key(name)}/"


def model_key(name: str) -> str:
    return model_prefix(name) + "model"


def versions_prefix(name: str) -> str:
    return model_prefix(name) + "versions/"


def version_key(name: str, version: int) -> str:
    return versions_prefix(name) + seq_name(version)


def aliases_prefix(name: str) -> str:
    return model_prefix(name) + "aliases/"


def alias_prefix(name: str, alias: str) -> str:
    return f"{aliases_prefix(name)}{name_key(alias)}/"


def events_prefix(name: str) -> str:
    return model_prefix(name) + "events/"


def seq_name(n: int) -> str:
    return f"{n:010d}"


def parse_seq(key: str) -> int | None:
    """The number at the end of a listed key, or None for a key that is not one of ours."""
    last = key.rstrip("/").rsplit("/", 1)[-1]
    return int(last) if last.isdigit() else None


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_model_name(name: object) -> str:
    """A registered model name: non-empty text without '/', '@', control characters or
    surrounding spaces (it must read back unambiguously from ``models:/<name>@<alias>``)."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInputError(f"registered model name must be a non-empty string, got {name!r}")
    if len(name) > MAX_MODEL_NAME_LEN:
        raise InvalidInputError(f"registered model name {name[:40]!r}... is longer than {MAX_MODEL_NAME_LEN} characters")
    if name != name.strip() or "/" in name or "@" in name or _CONTROL.search(name):
        raise InvalidInputError(
            f"invalid registered model name {name!r}: it may not contain '/', '@' or control characters, "
            "nor start or end with a space"
        )
    return name


_ALIAS = re.compile(r"^[A-Za-z0-9_\-]{1,255}$")
_VERSION_LIKE = re.compile(r"^[vV]\d+$")


def check_alias(alias: object) -> str:
    """An alias: letters, digits, '_' and '-'; not 'latest' and not of the form 'v<n>' (MLflow's rules)."""
    if not isinstance(alias, str) or not _ALIAS.match(alias):
        raise InvalidInputError(
            f"invalid alias {alias!r}: an alias is 1 to 255 letters, digits, underscores (_) or dashes (-)"
        )
    if alias.lower() == "latest" or _VERSION_LIKE.match(alias):
        raise InvalidInputError(f"invalid alias {alias!r}: 'latest' and 'v<number>' are reserved in models:/ URIs")
    return alias


def check_version(version: object) -> int:
    """A version number (int or decimal string) >= 1."""
    if isinstance(version, bool):
        raise InvalidInputError(f"model version must be a positive integer, got {version!r}")
    if isinstance(version, str) and version.strip().isdigit():
        version = int(version.strip())
    if isinstance(version, int) and version >= 1:
        return version
    raise InvalidInputError(f"model version must be a positive integer such as 1 or '1', got {version!r}")
