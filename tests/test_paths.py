"""Artifact path safety (guarantee 9): no path can escape the run or a download's destination."""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casstore._paths import clean_artifact_path, clean_optional_path, join_artifact_path, safe_destination
from casstore.exceptions import InvalidInputError, UnsafePathError


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("a.txt", "a.txt"),
        ("./a//b/", "a/b"),
        ("dir/./sub/file.bin", "dir/sub/file.bin"),
        ("name with spaces/ü.txt", "name with spaces/ü.txt"),
        (Path("x/y.bin"), "x/y.bin"),
        ("..hidden/file", "..hidden/file"),
    ],
)
def test_clean_paths_are_normalised(raw: object, clean: str) -> None:
    assert clean_artifact_path(raw) == clean  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad, why",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("/etc/passwd", "absolute"),
        ("../x", "'..'"),
        ("a/../../x", "'..'"),
        ("a/..", "'..'"),
        ("C:/x", "absolute"),
        ("c:x", "absolute"),
        ("a\\..\\b", "backslash"),
        ("a\x00b", "control"),
        ("a\nb", "control"),
        (".", "names no file"),
        ("./", "names no file"),
        ("x" * 5000, "longer"),
        (5, "string"),
    ],
)
def test_unsafe_paths_are_refused_with_a_reason(bad: object, why: str) -> None:
    with pytest.raises(UnsafePathError, match=why) as e:
        clean_artifact_path(bad)  # type: ignore[arg-type]
    assert isinstance(e.value, ValueError) and isinstance(e.value, InvalidInputError)


def test_optional_path_means_root_when_empty() -> None:
    for root in (None, "", ".", "./", "./."):
        assert clean_optional_path(root) == ""
    assert clean_optional_path("a/b/") == "a/b"
    with pytest.raises(UnsafePathError):
        clean_optional_path("/")
    with pytest.raises(UnsafePathError):
        clean_optional_path("../up")


def test_join_checks_both_parts() -> None:
    assert join_artifact_path(None, "f") == "f"
    assert join_artifact_path("a/b", "c/d") == "a/b/c/d"
    with pytest.raises(UnsafePathError):
        join_artifact_path("a", "../../x")
    with pytest.raises(UnsafePathError):
        join_artifact_path("/abs", "x")


def test_safe_destination_refuses_symlinks_leading_out(tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    outside = tmp_path / "outside"
    dst.mkdir()
    outside.mkdir()
    os.symlink(outside, dst / "link")
    with pytest.raises(UnsafePathError, match="outside the destination"):
        safe_destination(dst, "link/file.txt")
    os.symlink(outside / "target", dst / "leaf")
    with pytest.raises(UnsafePathError, match="symbolic link"):
        safe_destination(dst, "leaf")
    assert safe_destination(dst, "a/b.txt") == str(dst.resolve() / "a" / "b.txt")


# ---- properties -----------------------------------------------------------------------------

_part = st.one_of(
    st.sampled_from(["", ".", "..", "...", "a", "b.txt", "..x", "x..", " ", "C:", "c:x", "~", "$HOME"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=6),
)
_raw_path = st.lists(_part, min_size=1, max_size=6).map("/".join) | st.text(max_size=30)


@settings(max_examples=400, deadline=None)
@given(_raw_path)
def test_any_accepted_path_stays_inside_its_root(raw: str) -> None:
    try:
        clean = clean_artifact_path(raw)
    except UnsafePathError:
        return
    parts = clean.split("/")
    assert clean and not clean.startswith("/")
    assert all(p not in ("", ".", "..") for p in parts)
    assert "\\" not in clean and "\x00" not in clean
    # joined under any root, the normalised result stays under it
    root = "/store/run"
    joined = posixpath.normpath(posixpath.join(root, clean))
    assert joined.startswith(root + "/")
    # cleaning is idempotent
    assert clean_artifact_path(clean) == clean


@settings(max_examples=200, deadline=None)
@given(st.lists(_part, min_size=1, max_size=5).map("/".join))
def test_paths_with_a_dotdot_part_are_always_refused(raw: str) -> None:
    if ".." in raw.split("/"):
        with pytest.raises(UnsafePathError):
            clean_artifact_path(raw)


@settings(max_examples=200, deadline=None)
@given(_raw_path)
def test_safe_destination_never_points_outside(raw: str) -> None:
    root = "/nonexistent-casstore-root/dst"
    try:
        target = safe_destination(root, raw)
    except UnsafePathError:
        return
    assert os.path.commonpath([root, target]) == root and target != root


def test_a_refused_path_that_is_really_data_is_not_echoed_whole() -> None:
    """Arguments swapped by mistake (``log_bytes(data, path)``) put megabytes where the path
    goes: the error names the value's start and its size, not all of it."""
    for data in (b"\x00\xff" * 500_000, "x" * 1_000_000):
        with pytest.raises(UnsafePathError) as e:
            clean_artifact_path(data)  # type: ignore[arg-type]
        message = str(e.value)
        assert len(message) < 400 and "relative path" in message
        assert "1000000 bytes" in message or isinstance(data, str)
