"""A damaged experiment name record costs the lookup by that name, not every listing.

A name record (`experiments/names/<key>`) only leads from a name to its experiment, whose
own records say what it is. One that fails its check is named in a warning; the
experiments, their runs and the UI's pages are all still listed.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from casstore.exceptions import DamagedRecordWarning
from casstore.objects import open_store
from casstore.runs import RunStore, layout


@pytest.fixture
def damaged(tmp_path: Path) -> tuple[Path, dict[str, str], str]:
    root = tmp_path / "store"
    store = RunStore(open_store(str(root), create=True))
    runs = {}
    for name in ("fraud", "churn"):
        h = store.create_run(store.get_or_create_experiment(name))
        h.log_param("lr", "0.1")
        h.end()
        runs[name] = h.run_id
    key = layout.experiment_name_key("fraud")
    raw = bytearray((root / key).read_bytes())
    raw[len(raw) // 2] ^= 0x01
    (root / key).write_bytes(bytes(raw))
    return root, runs, key


def test_casstore_runs_lists_every_run_and_names_the_damaged_record(damaged: tuple[Path, dict[str, str], str]) -> None:
    root, runs, key = damaged
    r = subprocess.run([sys.executable, "-m", "casstore.cli", "--store", str(root), "runs", "--json"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert sorted(x["run_id"] for x in json.loads(r.stdout)) == sorted(runs.values())
    assert key in r.stderr and "Traceback" not in r.stderr


def test_search_experiments_lists_every_experiment_with_a_warning(damaged: tuple[Path, dict[str, str], str]) -> None:
    from casstore.tracking.client import Client

    root, _runs, key = damaged
    with pytest.warns(DamagedRecordWarning, match=key):
        names = {e.name for e in Client(str(root)).search_experiments()}
    assert {"fraud", "churn"} <= names


def test_the_ui_lists_every_experiment(damaged: tuple[Path, dict[str, str], str]) -> None:
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from casstore.ui import create_app

    root, _runs, key = damaged
    with TestClient(create_app(RunStore(open_store(str(root))))) as c:
        page = c.get("/")
    assert page.status_code == 200 and "fraud" in page.text and "churn" in page.text
    notice = page.text[page.text.index('class="error damaged-experiments"'):]
    assert key in notice.split("</div>")[0]  # the damaged record is named on the page, not only in the log


def test_a_damaged_experiment_costs_its_place_in_the_list_not_its_runs_or_the_others(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = RunStore(open_store(str(root), create=True))
    runs, ids = {}, {}
    for name in ("fraud", "churn"):
        ids[name] = store.get_or_create_experiment(name)
        h = store.create_run(ids[name])
        h.end()
        runs[name] = h.run_id
    key = layout.experiment_meta_key(ids["fraud"])
    raw = bytearray((root / key).read_bytes())
    raw[len(raw) // 2] ^= 0x01
    (root / key).write_bytes(bytes(raw))
    cli = [sys.executable, "-m", "casstore.cli", "--store", str(root), "runs", "--json"]
    r = subprocess.run(cli, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert sorted(x["run_id"] for x in json.loads(r.stdout)) == sorted(runs.values())  # its runs too
    assert key in r.stderr
    r = subprocess.run([*cli, "--experiment", "churn"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert [x["run_id"] for x in json.loads(r.stdout)] == [runs["churn"]]
    if importlib.util.find_spec("starlette") is not None:  # the UI's home page names what it left out
        from starlette.testclient import TestClient

        from casstore.ui import create_app

        with TestClient(create_app(RunStore(open_store(str(root))))) as c:
            page = c.get("/")
        assert page.status_code == 200 and "churn" in page.text
        notice = page.text[page.text.index('class="error damaged-experiments"'):].split("</div>")[0]
        assert f"experiment {ids['fraud']} is left out" in notice and key in notice
