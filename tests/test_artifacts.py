"""Artifacts through the tracking API: logging files, trees and objects; listing; verified reads."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from blake3 import blake3

import casstore
from casstore.exceptions import (
    ArtifactPathConflictError,
    ImmutableArtifactError,
    IntegrityError,
    InvalidInputError,
    LocalFileError,
    ObjectNotFoundError,
    UnsafePathError,
)
from casstore.objects.codec import pack
from casstore.objects.layout import INLINE_MAX
from casstore.runs import ArtifactEntry, layout
from casstore.tracking.uri import get_store

from tracking_helpers import corrupt_artifact, run_python, tracking, write  # noqa: F401  (fixture)

#: every test here stores content: it runs on each content layout (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("store_layout")


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


def test_log_image_with_a_key_writes_an_image_series_as_mlflow_3(tracking: str) -> None:
    import numpy as np

    img = np.zeros((10, 40, 3), dtype=np.uint8)
    with casstore.start_run() as run:
        casstore.log_image(img, key="val/sample", step=np.int64(3), timestamp=1_700_000_000_000)
        casstore.log_image(img, key="val/sample")  # step 0, timestamp now
        with pytest.raises(InvalidInputError, match="artifact_file alone"):
            casstore.log_image(img, "x.png", step=1)
        with pytest.raises(InvalidInputError, match="exactly one of artifact_file"):
            casstore.log_image(img)
        with pytest.raises(InvalidInputError, match="key 'a:b' is invalid"):
            casstore.log_image(img, key="a:b")
        with pytest.raises(InvalidInputError, match="step must be an integer"):
            casstore.log_image(img, key="val", step=1.5)
    rid = run.info.run_id
    names = [f.path for f in casstore.list_artifacts(rid, "images")]
    uuid = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    first = [n for n in names if "+step+3+" in n]
    assert len(names) == 4 and len(first) == 2
    png = next(n for n in first if n.endswith(".png"))
    assert re.fullmatch(rf"images/val~sample\+step\+3\+timestamp\+1700000000000\+{uuid}\.png", png)
    preview = png[: -len(".png")] + "+compressed.webp"
    assert preview in first
    assert all(re.fullmatch(rf"images/val~sample\+step\+0\+timestamp\+\d{{13}}\+{uuid}(\+compressed\.webp|\.png)", n)
               for n in names if n not in first)
    assert casstore.artifacts.load_image(f"runs:/{rid}/{png}").size == (40, 10)
    assert casstore.artifacts.load_image(f"runs:/{rid}/{preview}").size == (256, 64)  # MLflow's preview
    assert casstore.get_run(rid).data.tags["mlflow.loggedImages"] == "True"


@pytest.mark.parametrize("name,content,kind", [
    ("notes.txt", "hello world", "a str"), ("list.yaml", "- 1\n- 2\n", "a list"),
    ("list.json", "[1, 2]", "a list"), ("empty.yaml", "", "nothing"), ("number.json", "3", "a int"),
])
def test_load_dict_refuses_content_that_is_not_a_mapping(tracking: str, name: str, content: str, kind: str) -> None:
    with casstore.start_run() as run:
        casstore.log_text(content, name)
    with pytest.raises(InvalidInputError, match=f"{name}' does not hold a JSON or YAML mapping \\(it parses to {kind}\\)"):
        casstore.artifacts.load_dict(f"runs:/{run.info.run_id}/{name}")


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


def test_download_lands_under_the_last_name_and_verifies(tracking: str, tree: Path, tmp_path: Path) -> None:
    """As MLflow's: a file or directory lands in ``dst_path`` under its last name, so scripts
    that open ``<dst>/b.txt`` after downloading ``out/sub/b.txt`` find it."""
    with casstore.start_run() as run:
        casstore.log_artifacts(tree, "out")
    rid = run.info.run_id
    dst = tmp_path / "dl"
    one = casstore.artifacts.download_artifacts(run_id=rid, artifact_path="out/sub/b.txt", dst_path=dst)
    assert one == str(dst / "b.txt") and Path(one).read_text() == "B"
    d = casstore.artifacts.download_artifacts(f"runs:/{rid}/out/sub", dst_path=dst / "x")
    assert d == str(dst / "x" / "sub")
    assert sorted(str(p.relative_to(d)) for p in Path(d).rglob("*") if p.is_file()) == ["b.txt", "deeper/c.bin"]
    whole = casstore.artifacts.download_artifacts(f"runs:/{rid}", dst_path=dst / "all")
    assert (Path(whole) / "out" / "sub" / "deeper" / "c.bin").read_bytes() == (tree / "sub/deeper/c.bin").read_bytes()
    tmp = Path(casstore.artifacts.download_artifacts(run_id=rid, artifact_path="out/a.txt"))  # a fresh temp dir
    assert tmp.read_text() == "A"
    shutil.rmtree(tmp.parent)
    assert casstore.Client().download_artifacts(rid, "out/a.txt", dst / "c") == str(dst / "c" / "a.txt")
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


def _bind_as_an_older_casstore(run_id: str, path: str, data: bytes) -> None:
    """Bind ``path`` the way casstore did before file/directory conflicts were refused: the
    inline binding record alone, no check, no directory marker."""
    entry = ArtifactEntry(path, blake3(data).hexdigest(), len(data), "inline", 1)
    get_store().backend.put_if_absent(layout.artifact_key(run_id, path), pack({**entry.to_record(), "data": data}))


def test_a_legacy_run_with_a_file_and_directory_at_one_name_is_listed_whole_and_downloaded_apart(
    tracking: str, tmp_path: Path
) -> None:
    with casstore.start_run() as run:
        casstore.log_text("file", "a")
        _bind_as_an_older_casstore(run.info.run_id, "a/b", b"inside")
    rid = run.info.run_id
    assert [(f.path, f.is_dir) for f in casstore.list_artifacts(rid)] == [("a", False), ("a", True)]
    assert [f.path for f in casstore.list_artifacts(rid, "a")] == ["a/b"]
    with pytest.raises(InvalidInputError, match="both a file and a directory"):
        casstore.artifacts.download_artifacts(run_id=rid, dst_path=tmp_path / "d")
    got = casstore.artifacts.download_artifacts(run_id=rid, artifact_path="a/b", dst_path=tmp_path / "e")
    assert Path(got).read_text() == "inside"
    got = casstore.artifacts.download_artifacts(run_id=rid, artifact_path="a", dst_path=tmp_path / "f")
    assert Path(got).read_text() == "file"


@pytest.mark.parametrize("first,second", [("model", "model/weights.txt"), ("model/weights.txt", "model"),
                                          ("a", "a/b/c.txt"), ("a/b/c.txt", "a")])
def test_a_file_and_a_directory_at_one_name_are_refused_in_either_order(tracking: str, tmp_path: Path,
                                                                        first: str, second: str) -> None:
    with casstore.start_run() as run:
        casstore.log_text("first", first)
        with pytest.raises(ArtifactPathConflictError) as e:
            casstore.log_text("second", second)
        assert first in str(e.value) and second in str(e.value) and run.info.run_id in str(e.value)
        assert isinstance(e.value, ImmutableArtifactError)
        with pytest.raises(ArtifactPathConflictError):  # also in a batch, and as a large file
            casstore.log_artifact(write(tmp_path / "big" / os.path.basename(second), os.urandom(INLINE_MAX + 1)),
                                  os.path.dirname(second) or None)
    assert _paths(run.info.run_id) == [first]
    casstore.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=tmp_path / "whole")


def test_a_conflict_is_seen_from_another_process(tracking: str, tmp_path: Path) -> None:
    with casstore.start_run() as run:
        casstore.log_text("w", "model/weights.txt")
        casstore.log_text("f", "notes")
        code = (
            "import sys, casstore\n"
            "from casstore.exceptions import ArtifactPathConflictError\n"
            "c = casstore.MlflowClient(sys.argv[1])\n"
            "for path in ('model', 'notes/more.txt'):\n"
            "    try:\n"
            "        c.log_text(sys.argv[2], 'x', path)\n"
            "        print('bound', path)\n"
            "    except ArtifactPathConflictError as e:\n"
            "        print('refused', path, '|', e)\n"
        )
        out = run_python(code, tracking, run.info.run_id)
        assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("refused model |") and "'model/weights.txt'" in lines[0]
    assert lines[1].startswith("refused notes/more.txt |") and "'notes' is already a file" in lines[1]
    assert _paths(run.info.run_id) == ["model/weights.txt", "notes"]


def test_a_failed_log_leaves_its_path_free(tracking: str, tmp_path: Path) -> None:
    with casstore.start_run() as run:
        with pytest.raises(LocalFileError):
            casstore.log_artifact(tmp_path / "missing.txt", "out")
        with pytest.raises(LocalFileError):
            casstore.log_artifact(tmp_path / "gone.txt")
        casstore.log_text("a file after all", "out")  # no file was bound under out/
        casstore.log_text("a directory after all", "gone.txt/inner.txt")
    assert _paths(run.info.run_id) == ["gone.txt/inner.txt", "out"]


def test_directory_markers_stay_out_of_the_seal(tracking: str) -> None:
    with casstore.start_run() as run:
        casstore.log_text("w", "model/sub/weights.txt")
    store = get_store()
    rid = run.info.run_id
    markers = sorted(store.backend.list(layout.dirs_prefix(rid)))
    if store.get_run(rid).artifacts["model/sub/weights.txt"].batch:
        assert markers == []  # bound in a batch record, which checks paths against the batches below
    else:
        assert markers == sorted(layout.dir_marker_key(rid, d) for d in ("model", "model/sub"))
    seal = store.seal_record(rid)
    manifest = store.read_manifest(rid, seal["digest"])  # type: ignore[index]
    assert list(manifest["artifacts"]) == ["model/sub/weights.txt"]
    assert "dirs" not in str(sorted(manifest))


def test_get_artifact_uri(tracking: str) -> None:
    with casstore.start_run() as run:
        assert casstore.get_artifact_uri() == f"runs:/{run.info.run_id}"
        assert casstore.get_artifact_uri("m/x.pkl") == f"runs:/{run.info.run_id}/m/x.pkl"
        assert run.info.artifact_uri == f"runs:/{run.info.run_id}"
