"""What the `casstore` command prints, through its entry point: progress that follows the
bytes, aligned listings, whole signatures, JSON for scripts, clear errors for a bad --store."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from blake3 import blake3
from click.testing import CliRunner, Result
from sklearn.linear_model import LogisticRegression
from tracking_helpers import tracking  # noqa: F401  (fixture)

import casstore
import casstore.sklearn
from casstore.cli import cli as casstore_cli

LONG_NAMES = [f"feature_{i:02d}_measured_over_the_last_ninety_days" for i in range(30)]


def cli(*args: str) -> Result:
    return CliRunner().invoke(casstore_cli, list(args), prog_name="casstore")


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


def b3(path: str | Path) -> str:
    return blake3(Path(path).read_bytes()).hexdigest()


def assert_aligned(lines: list[str]) -> None:
    """Lines of ``name  size  digest``: the digests start in one column, the sizes end in one."""
    assert len(lines) >= 2
    found = [re.search(r"(\d+(?:\.\d)? (?:B|KiB|MiB|GiB))\s+([0-9a-f]{64})$", line) for line in lines]
    assert all(found), lines
    assert len({m.start(2) for m in found if m}) == 1, lines
    assert len({m.end(1) for m in found if m}) == 1, lines


# ---- progress ---------------------------------------------------------------------------------


@pytest.fixture
def bar_advances(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Progress bars drawn as on a terminal (stderr), each advance of a bar recorded."""
    from rich.progress import Progress as RichProgress

    import casstore.cli._common as common

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(common, "is_interactive", lambda stream=None: stream is None)  # stderr only: tables stay plain
    advances: list[float] = []
    real = RichProgress.advance

    def advance(self: RichProgress, task: Any, n: float = 1) -> None:
        advances.append(n)
        real(self, task, n)

    monkeypatch.setattr(RichProgress, "advance", advance)
    return advances


def test_logging_and_downloading_one_large_file_advance_the_bar_with_its_bytes(
    tmp_path: Path, bar_advances: list[float]
) -> None:
    big = tmp_path / "weights.bin"
    big.write_bytes(os.urandom(24 << 20))  # larger than one read block: stored chunk by chunk
    store = str(tmp_path / "store")
    logged = json.loads(ok(cli("log", str(big), "--store", store, "--json")).stdout)
    assert len(bar_advances) > 4 and sum(bar_advances) == big.stat().st_size
    bar_advances.clear()
    out = tmp_path / "out.bin"
    ok(cli("get", logged["run_id"], "weights.bin", "-o", str(out), "--store", store))
    assert len(bar_advances) > 4 and sum(bar_advances) == big.stat().st_size
    assert b3(out) == b3(big)


# ---- listings -----------------------------------------------------------------------------------


@pytest.fixture
def files(tmp_path: Path) -> Path:
    d = tmp_path / "files"
    d.mkdir()
    (d / "a.txt").write_bytes(b"x" * 10)
    (d / "a-much-longer-file-name.csv").write_bytes(os.urandom(200_000))
    (d / "mid.json").write_bytes(os.urandom(3_000))
    return d


def test_log_get_and_show_list_files_in_aligned_columns(tmp_path: Path, files: Path) -> None:
    store = str(tmp_path / "store")
    out = ok(cli("log", *sorted(str(p) for p in files.iterdir()), "--store", store)).stdout.splitlines()
    assert_aligned(out[:-1])
    run_id = out[-1].split()[1]
    got = ok(cli("get", run_id, "-o", str(tmp_path / "dl"), "--store", store)).stdout.splitlines()
    assert_aligned(got)
    shown = ok(cli("show", run_id, "--store", store)).stdout.splitlines()
    start = next(i for i, line in enumerate(shown) if line.startswith("artifacts ("))
    assert_aligned(shown[start + 1 : start + 4])


def test_get_json_names_every_file_it_wrote(tmp_path: Path, files: Path) -> None:
    store = str(tmp_path / "store")
    run_id = json.loads(ok(cli("log", str(files), "--store", store, "--json")).stdout)["run_id"]
    written = json.loads(ok(cli("get", run_id, "files", "-o", str(tmp_path / "dl"), "--store", store, "--json")).stdout)
    assert sorted(w["path"] for w in written) == sorted(f"files/{p.name}" for p in files.iterdir())
    for w in written:
        assert os.path.isabs(w["file"]) and b3(w["file"]) == w["digest"] == b3(files / Path(w["path"]).name)
        assert os.path.getsize(w["file"]) == w["size"]


# ---- runs made by `casstore log` ----------------------------------------------------------------


def test_a_run_made_by_log_has_the_run_name_tag_the_api_sets(tmp_path: Path, files: Path) -> None:
    store = str(tmp_path / "store")
    named = json.loads(ok(cli("log", str(files / "a.txt"), "--name", "nightly", "--store", store, "--json")).stdout)
    unnamed = json.loads(ok(cli("log", str(files / "a.txt"), "--store", store, "--json")).stdout)
    client = casstore.Client(store)
    run = client.get_run(named["run_id"])
    assert run.info.run_name == "nightly" and run.data.tags["mlflow.runName"] == "nightly"
    other = client.get_run(unnamed["run_id"])
    assert other.info.run_name and other.data.tags["mlflow.runName"] == other.info.run_name
    assert run.data.tags["mlflow.source.name"] == "casstore log"


def test_delete_run_json_says_what_was_done(tmp_path: Path, files: Path) -> None:
    store = str(tmp_path / "store")
    run_id = json.loads(ok(cli("log", str(files / "a.txt"), "--store", store, "--json")).stdout)["run_id"]
    first = json.loads(ok(cli("delete-run", run_id[:8], "--reason", "wrong split", "--yes", "--store", store, "--json")).stdout)
    assert first == {"run_id": run_id, "deleted": True, "already_deleted": False, "reason": "wrong split", "pinned_by": []}
    again = json.loads(ok(cli("delete-run", run_id, "--store", store, "--json")).stdout)
    assert again["already_deleted"] is True and again["run_id"] == run_id
    assert casstore.Client(store).store.get_run(run_id).deleted


# ---- models ---------------------------------------------------------------------------------------


@pytest.fixture
def wide_model(tracking: str) -> tuple[str, str]:  # noqa: F811
    """A registered sklearn model whose signature has 30 long column names: (store, run id)."""
    frame = pd.DataFrame([[float(i + j) for j in range(len(LONG_NAMES))] for i in range(8)], columns=LONG_NAMES)
    clf = LogisticRegression().fit(frame, [0, 1] * 4)
    with casstore.start_run() as run:
        casstore.sklearn.log_model(clf, name="model", input_example=frame.head(2), registered_model_name="wide")
    return tracking, run.info.run_id


def test_models_show_prints_the_whole_signature_and_aligned_files(wide_model: tuple[str, str]) -> None:
    store, run_id = wide_model
    out = ok(cli("models", "show", "models:/wide/1", "--store", store)).stdout
    for name in LONG_NAMES:
        assert f"'{name}': double" in out
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("files ("))
    assert_aligned(lines[start + 1 :])
    header = lines[:start]
    starts = {m.end() for m in (re.match(r"\S+ +", line) for line in header) if m}
    assert len(starts) == 1 and len([line for line in header if line.strip()]) >= 8


def test_models_show_json_reports_flavors_as_the_mlmodel_file_does(wide_model: tuple[str, str]) -> None:
    store, run_id = wide_model
    shown = json.loads(ok(cli("models", "show", f"runs:/{run_id}/model", "--store", store, "--json")).stdout)
    mlmodel = yaml.safe_load(ok(cli("cat", run_id, "model/MLmodel", "--store", store)).stdout)
    assert shown["flavors"]["python_function"]["loader_module"] == mlmodel["flavors"]["python_function"]["loader_module"]
    assert shown["flavors"] == mlmodel["flavors"]


def test_models_alias_json(wide_model: tuple[str, str]) -> None:
    store, _ = wide_model
    moved = json.loads(ok(cli("models", "alias", "wide", "champion", "1", "--store", store, "--json")).stdout)
    [version] = json.loads(ok(cli("models", "versions", "wide", "--store", store, "--json")).stdout)
    assert moved == {"name": "wide", "alias": "champion", "version": 1, "model_digest": version["model_digest"],
                     "model_uri": "models:/wide@champion"}


# ---- verify ---------------------------------------------------------------------------------------


def test_verify_json_keeps_every_counter_even_at_zero(tmp_path: Path, files: Path) -> None:
    from casstore.maintenance.verify import CHECKED

    store = str(tmp_path / "store")
    run_id = json.loads(ok(cli("log", str(files / "a.txt"), "--store", store, "--json")).stdout)["run_id"]
    for args in (["--all"], [run_id]):
        report = json.loads(ok(cli("verify", *args, "--store", store, "--json")).stdout)
        assert set(report["checked"]) == set(CHECKED)
        assert report["checked"]["registry_versions"] == 0 and report["checked"]["models"] == 0


# ---- --store ----------------------------------------------------------------------------------------


def test_a_store_path_naming_a_regular_file_is_refused_as_such(tmp_path: Path, files: Path) -> None:
    not_a_store = tmp_path / "notes.txt"
    not_a_store.write_text("hello\n")
    for args in (["runs"], ["log", str(files / "a.txt")]):
        r = cli(*args, "--store", str(not_a_store))
        assert r.exit_code == 1 and "is a file, not a store directory" in r.stderr, r.stderr
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    r = cli("log", str(files / "a.txt"), "--store", str(not_a_store / "store"))
    assert r.exit_code == 1 and "which is a file, not a directory" in r.stderr
    assert not_a_store.read_text() == "hello\n"
    r = cli("runs", "--store", str(tmp_path / "missing"))
    assert r.exit_code == 1 and "does not exist" in r.stderr
