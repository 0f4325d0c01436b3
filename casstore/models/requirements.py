"""Requirements inference: the pinned packages a serialized model needs to load.

The modules a model imports when it is loaded are read from the serialized bytes
themselves, without loading them: the ``GLOBAL``/``STACK_GLOBAL`` opcodes of a
pickle, the ``__module__`` fields of a skops schema. Each top-level module is
mapped to the installed distribution that provides it, pinned to its version.
"""

from __future__ import annotations

import functools
import importlib.metadata as md
import json
import os
import pickletools
import sys
import zipfile
from collections.abc import Iterable, Sequence
from typing import IO

from casstore.exceptions import InvalidInputError, LocalFileError

__all__ = ["pickle_modules", "skops_modules", "pin_requirements", "resolve_requirements"]

_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}
_GET_OPS = {"BINGET", "LONG_BINGET", "GET"}
_PUT_OPS = {"BINPUT", "LONG_BINPUT", "PUT"}


def pickle_modules(stream: IO[bytes]) -> set[str]:
    """Top-level modules named by the globals of a pickle stream (nothing is unpickled)."""
    mods: set[str] = set()
    memo: dict[int, object] = {}
    last: list[object] = []  # the most recent values pushed, enough for STACK_GLOBAL
    try:
        for op, arg, _ in pickletools.genops(stream):
            name = op.name
            if name in _STRING_OPS:
                last.append(arg)
            elif name in _GET_OPS:
                last.append(memo.get(arg))  # type: ignore[arg-type]
            elif name in _PUT_OPS:
                memo[arg] = last[-1] if last else None  # type: ignore[index]
                continue
            elif name == "MEMOIZE":
                memo[len(memo)] = last[-1] if last else None
                continue
            elif name == "GLOBAL":
                mods.add(str(arg).split(" ", 1)[0])
                last.append(None)
            elif name == "STACK_GLOBAL":
                if len(last) >= 2 and isinstance(last[-2], str):
                    mods.add(last[-2])
                last.append(None)
            elif name == "STOP":
                break
            elif name in ("FRAME", "PROTO"):
                continue
            else:
                last.append(None)
            if len(last) > 8:
                del last[:-2]
    except ValueError as e:
        raise InvalidInputError(f"cannot read the serialized model to infer its requirements: {e}") from e
    return {m.split(".", 1)[0] for m in mods if m}


def skops_modules(path: str | os.PathLike[str]) -> set[str]:
    """Top-level modules named in a skops file's schema."""
    try:
        with zipfile.ZipFile(path) as z:
            schema = json.loads(z.read("schema.json"))
    except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as e:
        raise LocalFileError(f"cannot read the skops file {os.fspath(path)!r} to infer its requirements: {e}") from e
    mods: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            m = node.get("__module__")
            if isinstance(m, str) and m:
                mods.add(m.split(".", 1)[0])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(schema)
    return mods


@functools.lru_cache(maxsize=1)
def _module_dists() -> dict[str, list[str]]:
    return dict(md.packages_distributions())


def _dist_version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def pin_requirements(modules: Iterable[str], extra_dists: Iterable[str] = ()) -> list[str]:
    """``name==version`` for the installed distributions behind ``modules`` and ``extra_dists``.

    Standard-library modules and modules no installed distribution provides (local
    code) are left out.
    """
    dists: set[str] = set(extra_dists)
    table = _module_dists()
    for m in modules:
        if m in sys.stdlib_module_names or m in sys.builtin_module_names or m in ("__main__", "builtins"):
            continue
        dists.update(table.get(m, ()))
    pins: dict[str, str] = {}
    for d in dists:
        v = _dist_version(d)
        if v is not None:
            pins[d.lower()] = f"{d}=={v}"
    return [pins[k] for k in sorted(pins)]


def _check_lines(reqs: object, what: str) -> list[str]:
    if isinstance(reqs, (str, os.PathLike)):
        path = os.fspath(reqs)
        try:
            with open(path, encoding="utf-8") as f:
                lines = [ln.strip() for ln in f]
        except OSError as e:
            raise LocalFileError(f"cannot read {what} file {path!r}: {e.strerror or e}") from e
        return [ln for ln in lines if ln and not ln.startswith("#")]
    if not isinstance(reqs, Sequence) or not all(isinstance(r, str) for r in reqs):
        raise InvalidInputError(f"{what} must be a list of requirement strings or a path to a requirements file, got {reqs!r}")
    out = []
    for r in reqs:
        r = r.strip()
        if not r or "\n" in r:
            raise InvalidInputError(f"{what} has an empty or multi-line requirement: {r!r}")
        out.append(r)
    return out


def resolve_requirements(inferred: list[str], pip_requirements: object = None, extra_pip_requirements: object = None) -> list[str]:
    """The final requirements: ``pip_requirements`` replaces the inferred ones,
    ``extra_pip_requirements`` adds to them (not both, as in MLflow)."""
    if pip_requirements is not None and extra_pip_requirements is not None:
        raise InvalidInputError("pass pip_requirements (replaces the inferred list) or extra_pip_requirements (adds to it), not both")
    if pip_requirements is not None:
        return _check_lines(pip_requirements, "pip_requirements")
    if extra_pip_requirements is not None:
        extra = _check_lines(extra_pip_requirements, "extra_pip_requirements")
        return inferred + [r for r in extra if r not in inferred]
    return list(inferred)
