"""Symbolic links in a logged directory follow one documented rule: a link to a file is
logged as that file's content, and one pointing outside the directory is named in a
LinkWarning; a link to a directory is not followed and is named too; a link loop or a
dangling link is a clear LocalFileError naming it, with nothing logged."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import casstore
from casstore.exceptions import LinkWarning, LocalFileError

from casstore.tracking.uri import get_store

from tracking_helpers import tracking  # noqa: F401  (fixture)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    d = tmp_path / "logged"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_text("a")
    (d / "sub" / "b.txt").write_text("b")
    return d


def logged(run_id: str) -> dict[str, bytes]:
    store = get_store()
    view = store.get_run(run_id)
    return {p: store.artifact_bytes(run_id, e) for p, e in view.artifacts.items()}


def test_a_link_to_a_file_inside_is_logged_quietly(tracking: str, tree: Path) -> None:
    os.symlink("sub/b.txt", tree / "same-b.txt")
    with casstore.start_run() as run:
        casstore.log_artifacts(str(tree))
    assert logged(run.info.run_id) == {"a.txt": b"a", "sub/b.txt": b"b", "same-b.txt": b"b"}


def test_a_link_to_a_file_outside_is_logged_and_named(tracking: str, tree: Path, tmp_path: Path) -> None:
    secret = tmp_path / "elsewhere.txt"
    secret.write_text("from elsewhere")
    os.symlink(secret, tree / "link.txt")
    with casstore.start_run() as run, pytest.warns(LinkWarning, match="outside it were logged.*link.txt"):
        casstore.log_artifacts(str(tree))
    assert logged(run.info.run_id)["link.txt"] == b"from elsewhere"


def test_a_link_to_a_directory_is_not_followed_and_is_named(tracking: str, tree: Path) -> None:
    os.symlink("..", tree / "sub" / "up")  # would recurse for ever if followed
    with casstore.start_run() as run, pytest.warns(LinkWarning, match="directories were not followed.*up"):
        casstore.log_artifacts(str(tree))
    assert set(logged(run.info.run_id)) == {"a.txt", "sub/b.txt"}


@pytest.mark.parametrize("kind", ["loop", "dangling"])
def test_a_link_loop_or_dangling_link_is_a_clear_error(tracking: str, tree: Path, kind: str) -> None:
    if kind == "loop":
        os.symlink("loop", tree / "sub" / "loop")
        bad, why = tree / "sub" / "loop", "symbolic link loop"
    else:
        os.symlink("nowhere", tree / "sub" / "gone")
        bad, why = tree / "sub" / "gone", "does not exist"
    with casstore.start_run() as run:
        with pytest.raises(LocalFileError, match=f"{bad}.*{why}.*nothing was logged"):
            casstore.log_artifacts(str(tree))
        with pytest.raises(LocalFileError, match=why):
            casstore.log_artifact(str(bad))
    assert logged(run.info.run_id) == {}
