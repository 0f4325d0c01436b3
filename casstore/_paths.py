"""Artifact path safety: every path a user or a record gives is checked here.

An artifact path is a relative, ``/``-separated name inside a run, such as
``model/weights.bin``. It may not be absolute, contain ``..``, a backslash, a
drive letter or a control character, so no path can make casstore read or write
outside the store or a download's destination.

>>> clean_artifact_path("./model//weights.bin")
'model/weights.bin'
>>> join_artifact_path("plots", "loss.png")
'plots/loss.png'
"""

from __future__ import annotations

import os
import re

from casstore.exceptions import UnsafePathError

__all__ = ["clean_artifact_path", "clean_optional_path", "join_artifact_path", "safe_destination", "MAX_PATH_LEN"]

MAX_PATH_LEN = 4096
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


#: characters of a refused path an error message shows (a path given by mistake may be megabytes of data)
_SHOWN = 120


def _refuse(path: object, what: str, why: str) -> UnsafePathError:
    shown = repr(path)
    if len(shown) > _SHOWN:
        size = f"{len(path)} {'bytes' if isinstance(path, (bytes, bytearray)) else 'characters'}" if hasattr(path, "__len__") else "long"
        shown = f"{shown[:_SHOWN]}... ({size})"
    return UnsafePathError(
        f"{what} {shown} is refused: {why}. Use a relative path with '/' separators "
        "inside the run, such as 'models/weights.bin'."
    )


def clean_artifact_path(path: str | os.PathLike[str], what: str = "artifact path") -> str:
    """Return ``path`` normalised (no ``.`` parts, no repeated or trailing ``/``) or raise
    :class:`~casstore.exceptions.UnsafePathError` if it is empty or could escape its root."""
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str):
        raise _refuse(path, what, f"it must be a string, not {type(path).__name__}")
    if not path or not path.strip():
        raise _refuse(path, what, "it is empty")
    if len(path) > MAX_PATH_LEN:
        raise _refuse(path[:40] + "...", what, f"it is longer than {MAX_PATH_LEN} characters")
    if _CONTROL.search(path):
        raise _refuse(path, what, "it contains a control character")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:  # a file name of bytes that are not UTF-8, as os.fsdecode gives it
        raise _refuse(path, what, f"it is not valid UTF-8 (a local file name of bytes {os.fsencode(path)!r}, "
                                  "from a system that wrote names in another encoding); rename the file to a UTF-8 "
                                  "name (for example with `convmv -f latin1 -t utf8 --notest`) and log it again, "
                                  "or log it alone under a name of your choice") from None
    if "\\" in path:
        raise _refuse(path, what, "it contains a backslash")
    if path.startswith("/") or _DRIVE.match(path):
        raise _refuse(path, what, "it is absolute")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise _refuse(path, what, "it contains '..'")
    if not parts:
        raise _refuse(path, what, "it names no file")
    clean = "/".join(parts)
    if _DRIVE.match(clean):
        raise _refuse(path, what, "it is absolute")
    if not clean.strip():
        raise _refuse(path, what, "it is empty")
    return clean


def clean_optional_path(path: str | os.PathLike[str] | None, what: str = "artifact path") -> str:
    """Like :func:`clean_artifact_path`, but ``None``, ``""`` and ``"."`` mean the run's root (``""``)."""
    if path is None:
        return ""
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if isinstance(path, str) and not path.startswith("/") and all(p in ("", ".") for p in path.split("/")):
        return ""
    return clean_artifact_path(path, what)


def join_artifact_path(prefix: str | os.PathLike[str] | None, name: str | os.PathLike[str]) -> str:
    """``prefix/name``, both checked; ``prefix`` may be empty (the run's root)."""
    head = clean_optional_path(prefix, "artifact_path")
    tail = clean_artifact_path(name, "artifact file name")
    return f"{head}/{tail}" if head else tail


def safe_destination(root: str | os.PathLike[str], rel_path: str) -> str:
    """The local path of ``rel_path`` under the directory ``root``, refused if it would land
    outside ``root`` (also through a symbolic link already present under ``root``)."""
    rel = clean_artifact_path(rel_path)
    base = os.path.realpath(os.fspath(root))
    target = os.path.join(base, *rel.split("/"))
    # resolve what exists of the parent chain: a symlink planted at dst/a must not lead out
    parent = os.path.realpath(os.path.dirname(target))
    if parent != base and not parent.startswith(base + os.sep):
        raise _refuse(rel_path, "download path", f"it would be written outside the destination {base!r}")
    if os.path.islink(target):
        raise _refuse(rel_path, "download path", "a symbolic link is in the way at the destination")
    return os.path.join(parent, os.path.basename(target))
