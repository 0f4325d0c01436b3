"""Artifacts through the tracking API: logging files, trees and objects; listing; verified reads."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from blake3 import blake3

import casstore
from casstore.exceptions import (
    ImmutableArtifactError,
    IntegrityError,
    InvalidInputError,
    LocalFileError,
    ObjectNotFoundError,
    UnsafePathError,
)
from casstore.objects.layout import INLINE_MAX
from casstore.tracking.uri import get_store

from tracking_helpers import corrupt_artifact, tracking, write  # noqa: F401  (fixture)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "outputs"
    write(root / "a.txt", "A")
    write(root / "sub" / "b.txt", "B")
    write(root / "sub" / "deeper" / "c.bin", os.urandom(1000))
    return root


def _paths(run_id: str) -> list[str]:
    return sorted(get_store().get_run(run_id).artifacts)


def test_log_artifact_file_and_directory_like_mlflow(tracking: str, tree: Path) -> None:
    with casstore.start_run() as run:
        casstore.log_artifact(tree / "a.txt")  # PathLike
        casstore.log_artifact(str(tree / "a.txt"), "copies")
        casstore.log_artifact(tree)  # a directory: logged under its own name
        casstore.log_artifact(tree / "sub", artifact_path="nested")
    assert _paths(run.info.run_id) == [
        "a.txt", "copies/a.txt", "nested/sub/b.txt", "nested/sub/deeper/c.bin",
        "outputs/a.txt", "outputs/sub/b.txt", "outputs/sub/deeper/c.bin",
    ]


def test_log_artifacts_logs_the_contents(tracking: str, tree: Path) -> None:
    with casstore.start_run() as run:
        casstore.log_artifacts(tree)
        casstore.log_artifacts(str(tree), artifact_path="again/here")
    assert _paths(run.info.run_id) == [
        "a.txt", "again/here/a.txt", "again/here/sub/b.txt", "again/here/sub/deeper/c.bin",
        "sub/b.txt", "sub/deeper/c.bin",
    ]
    with casstore.start_run():
        with pytest.raises(LocalFileError, match="no such directory"):
            casstore.log_artifacts(tree / "missing")
        with pytest.raises(LocalFileError, match="is a file"):
            casstore.log_artifacts(tree / "a.txt")
        with pytest.raises(LocalFileError, match="no such file"):
            casstore.log_artifact(tree / "missing.txt")


def test_relogging_different_content_at_a_path_is_refused(tracking: str, tmp_path: Path) -> None:
    f = write(tmp_path / "model.bin", b"v1")
    with casstore.start_run() as run:
        casstore.log_artifact(f)
        casstore.log_artifact(f)  # identical: no-op
        write(f, b"v2")
        with pytest.raises(ImmutableArtifactError) as e:
            casstore.log_artifact(f)
        assert "model.bin" in str(e.value)
        assert blake3(b"v1").hexdigest() in str(e.value) and blake3(b"v2").hexdigest() in str(e.value)
        with pytest.raises(ImmutableArtifactError):
            casstore.log_text("other", "model.bin")
    assert casstore.artifacts.load_text(f"runs:/{run.info.run_id}/model.bin") == "v1"


@pytest.mark.parametrize("bad", ["../x", "/abs", "a/../../b", "C:/win", "a\\..\\b"])
def test_unsafe_artifact_paths_are_refused(tracking: str, tmp_path: Path, bad: str) -> None:
    f = write(tmp_path / "f.txt", "x")
    with casstore.start_run() as run:
        with pytest.raises(UnsafePathError):
            casstore.log_artifact(f, bad)
        with pytest.raises(UnsafePathError):
            casstore.log_text("x", bad)
        with pytest.raises(UnsafePathError):
            casstore.log_artifacts(tmp_path, bad)
    assert _paths(run.info.run_id) == []
    with pytest.raises(UnsafePathError):
        casstore.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=bad, dst_path=tmp_path / "d")


def test_log_text_dict_and_load_back(tracking: str) -> None:
    cfg = {"lr": 0.1, "layers": [64, 32], "name": "x"}
    with casstore.start_run() as run:
        casstore.log_text("héllo\n", "notes/readme.txt")
        casstore.log_dict(cfg, "config.json")
        casstore.log_dict(cfg, "config.yaml")
        casstore.log_dict(cfg, "config.yml")
        casstore.log_dict(cfg, "config")  # no suffix: JSON, as MLflow
    rid = run.info.run_id
    assert casstore.artifacts.load_text(f"runs:/{rid}/notes/readme.txt") == "héllo\n"
    for name in ("config.json", "config.yaml", "config.yml", "config"):
        assert casstore.artifacts.load_dict(f"runs:/{rid}/{name}") == cfg
    assert json.loads(casstore.artifacts.load_text(f"runs:/{rid}/config")) == cfg
    assert "layers:" in casstore.artifacts.load_text(f"runs:/{rid}/config.yaml")
    with pytest.raises(ObjectNotFoundError):
        casstore.artifacts.load_text(f"runs:/{rid}/absent.txt")
    with pytest.raises(InvalidInputError, match="neither valid JSON nor YAML"):
        with casstore.start_run() as bad:
            casstore.log_text("{not: [valid", "broken.json")
        casstore.artifacts.load_dict(f"runs:/{bad.info.run_id}/broken.json")
    with pytest.raises(InvalidInputError, match="log_text takes a str"):
        casstore.log_text(b"bytes", "x.txt")  # type: ignore[arg-type]


def test_log_figure_and_image(tracking: str, tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots()
    ax.plot([1, 2, 3])
    with casstore.start_run() as run:
        casstore.log_figure(fig, "plots/line.png")
        casstore.log_figure(fig, "plots/line.svg")
        casstore.log_image(np.zeros((8, 9, 3), dtype=np.uint8), "images/black.png")
        casstore.log_image(np.full((4, 4), 0.5), "images/grey.png")
        with pytest.raises(InvalidInputError, match="within"):
            casstore.log_image(np.full((4, 4), 3.0), "images/bad.png")
        with pytest.raises(InvalidInputError, match="shape"):
            casstore.log_image(np.zeros((2, 2, 2)), "images/bad.png")
        with pytest.raises(InvalidInputError, match="matplotlib"):
            casstore.log_figure(object(), "x.png")
    plt.close(fig)
    rid = run.info.run_id
    files = {f.path: f for f in casstore.list_artifacts(rid, "plots")}
    assert set(files) == {"plots/line.png", "plots/line.svg"}
    png = casstore.artifacts.download_artifacts(f"runs:/{rid}/plots/line.png", dst_path=tmp_path / "dl")
    assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = casstore.artifacts.load_image(f"runs:/{rid}/images/black.png")
    assert img.size == (9, 8)
    assert casstore.artifacts.load_image(f"runs:/{rid}/images/grey.png").getpixel((0, 0)) == 128


def test_list_artifacts_entries(tracking: str, tree: Path) -> None:
    with casstore.start_run() as run:
        casstore.log_artifacts(tree)
        listing = casstore.list_artifacts()  # the active run
    rid = run.info.run_id
    assert [(f.path, f.is_dir) for f in listing] == [("a.txt", False), ("sub", True)]
    a = listing[0]
    assert a.file_size == 1 and a.digest == blake3(b"A").hexdigest()
    assert listing[1].file_size is None and listing[1].digest is None
    sub = casstore.list_artifacts(rid, "sub")
    assert [(f.path, f.is_dir) for f in sub] == [("sub/b.txt", False), ("sub/deeper", True)]
    assert casstore.list_artifacts(rid, "sub/b.txt") == []  # a file path lists nothing, as MLflow
    assert casstore.list_artifacts(rid, "absent") == []
    assert [f.path for f in casstore.artifacts.list_artifacts(f"runs:/{rid}/sub")] == ["sub/b.txt", "sub/deeper"]
    assert [f.path for f in casstore.Client().list_artifacts(rid, "sub/")] == ["sub/b.txt", "sub/deeper"]


def test_download_keeps_paths_and_verifies(tracking: str, tree: Path, tmp_path: Path) -> None:
    with casstore.start_run() as run:
        casstore.log_artifacts(tree, "out")
    rid = run.info.run_id
    dst = tmp_path / "dl"
    one = casstore.artifacts.download_artifacts(run_id=rid, artifact_path="out/sub/b.txt", dst_path=dst)
    assert one == str(dst / "out" / "sub" / "b.txt") and Path(one).read_text() == "B"
    d = casstore.artifacts.download_artifacts(f"runs:/{rid}/out/sub", dst_path=dst / "x")
    assert sorted(str(p.relative_to(d)) for p in Path(d).rglob("*") if p.is_file()) == ["b.txt", "deeper/c.bin"]
    whole = casstore.artifacts.download_artifacts(f"runs:/{rid}", dst_path=dst / "all")
    assert (Path(whole) / "out" / "sub" / "deeper" / "c.bin").read_bytes() == (tree / "sub/deeper/c.bin").read_bytes()
    tmp = Path(casstore.artifacts.download_artifacts(run_id=rid, artifact_path="out/a.txt"))  # a fresh temp dir
    assert tmp.read_text() == "A"
    shutil.rmtree(tmp.parent.parent)
    assert casstore.Client().download_artifacts(rid, "out/a.txt", dst / "c") == str(dst / "c" / "out" / "a.txt")
    with pytest.raises(ObjectNotFoundError, match="no artifacts"):
        casstore.artifacts.download_artifacts(run_id=rid, artifact_path="nothing", dst_path=dst)
    with pytest.raises(InvalidInputError, match="not supported"):
        casstore.artifacts.download_artifacts("s3://bucket/x")
    with pytest.raises(InvalidInputError, match="either"):
        casstore.artifacts.download_artifacts(f"runs:/{rid}", run_id=rid)
    with pytest.raises(InvalidInputError, match="runs URI"):
        casstore.artifacts.download_artifacts("runs:/not-an-id/x")


def test_download_never_writes_through_a_planted_symlink(tracking: str, tmp_path: Path) -> None:
    with casstore.start_run() as run:
        casstore.log_text("payload", "sub/file.txt")
    dst = tmp_path / "dst"
    outside = tmp_path / "outside"
    dst.mkdir()
    outside.mkdir()
    os.symlink(outside, dst / "sub")
    with pytest.raises(UnsafePathError, match="outside the destination"):
        casstore.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=dst)
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("size", [13, 40_000], ids=["held-in-its-record", "stored-as-chunks"])
def test_a_corrupt_artifact_fails_the_download_and_leaves_nothing(tracking: str, tmp_path: Path, size: int) -> None:
    text = ("precious data " * (size // 14 + 1))[:size]
    with casstore.start_run() as run:
        casstore.log_text(text, "data.txt")
    store = get_store()
    assert store.get_run(run.info.run_id).artifacts["data.txt"].inline == (size <= INLINE_MAX)
    corrupt_artifact(store, run.info.run_id, "data.txt", at=size // 2)
    dst = tmp_path / "dst"
    with pytest.raises(IntegrityError):
        casstore.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=dst)
    assert not (dst / "data.txt").exists() and not [p for p in dst.rglob("*") if p.is_file()]
    with pytest.raises(IntegrityError):
        casstore.artifacts.load_text(f"runs:/{run.info.run_id}/data.txt")


def test_file_and_directory_at_one_name_cannot_be_downloaded_together(tracking: str, tmp_path: Path) -> None:
    with casstore.start_run() as run:
        casstore.log_text("file", "a")
        casstore.log_text("inside", "a/b")
    with pytest.raises(InvalidInputError, match="both a file and a directory"):
        casstore.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=tmp_path / "d")
    got = casstore.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="a/b", dst_path=tmp_path / "e")
    assert Path(got).read_text() == "inside"


def test_get_artifact_uri(tracking: str) -> None:
    with casstore.start_run() as run:
        assert casstore.get_artifact_uri() == f"runs:/{run.info.run_id}"
        assert casstore.get_artifact_uri("m/x.pkl") == f"runs:/{run.info.run_id}/m/x.pkl"
        assert run.info.artifact_uri == f"runs:/{run.info.run_id}"
