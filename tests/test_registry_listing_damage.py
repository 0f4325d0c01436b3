"""A damaged registry record costs its registered model, not the registry's listings.

`casstore models list`, `search_registered_models`, `search_model_versions` and the UI's
pages list every model that reads, and name the one that does not (what is damaged and
what to do). Reading the damaged model itself is still refused, and gc, which must prove
every registry version, still blocks on it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from casstore.exceptions import CorruptRecordError, DamagedRecordWarning
from casstore.objects import open_store
from casstore.registry import Registry
from casstore.runs import RunStore, layout


class Registered:
    def __init__(self, root: Path) -> None:
        self.root = root
        store = RunStore(open_store(str(root), create=True))
        h = store.create_run(store.get_or_create_experiment("m"))
        w = store.objects.put_bytes(os.urandom(3000))
        digest = h.add_model("m", {"v": 1, "kind": "model", "name": "m", "run_id": h.run_id, "created": "",
                                   "flavors": {"x": {}}, "files": {"w.bin": {"digest": w.digest, "size": w.size}}})
        h.end()
        self.registry = Registry(store.backend)
        for name in ("damaged", "intact"):
            self.registry.create_version(name, digest, source=f"runs:/{h.run_id}/m")
            self.registry.set_model_tag(name, "team", "risk")
        self.event = sorted(store.backend.list(f"registry/{layout.name_key('damaged')}/events/"))[0]
        self.model = f"registry/{layout.name_key('damaged')}/model"

    def flip(self, key: str) -> None:
        p = self.root / key
        b = bytearray(p.read_bytes())
        b[len(b) // 2] ^= 0x01
        p.write_bytes(bytes(b))


@pytest.fixture(params=["event", "model"])
def reg(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Registered, str]:
    r = Registered(tmp_path / "store")
    key = r.event if request.param == "event" else r.model
    r.flip(key)
    return r, key


def test_models_list_names_the_damaged_model_and_lists_the_others(reg: tuple[Registered, str]) -> None:
    r, key = reg
    p = subprocess.run([sys.executable, "-m", "casstore.cli", "--store", str(r.root), "models", "list", "--json"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert [m["name"] for m in json.loads(p.stdout)] == ["intact"]
    assert "is skipped" in p.stderr and key in p.stderr and "Traceback" not in p.stderr


def test_registry_searches_list_the_others_with_a_warning(reg: tuple[Registered, str]) -> None:
    from casstore.tracking.client import Client

    r, key = reg
    client = Client(str(r.root))
    with pytest.warns(DamagedRecordWarning, match=key):
        assert [m.name for m in client.search_registered_models("tags.team = 'risk'")] == ["intact"]
    with pytest.warns(DamagedRecordWarning, match=key):
        assert [v.name for v in client.search_model_versions()] == ["intact"]
    with pytest.raises(CorruptRecordError):  # the damaged model itself is refused, never served
        r.registry.list_versions("damaged")
    with pytest.raises(CorruptRecordError):  # what gc reads to prove the registry: strict
        r.registry.list_models()


def test_the_ui_lists_the_others_and_names_the_damaged_model(reg: tuple[Registered, str]) -> None:
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from casstore.ui import create_app

    r, key = reg
    with TestClient(create_app(RunStore(open_store(str(r.root))))) as c:
        for page in ("/", "/models"):
            got = c.get(page)
            assert got.status_code == 200, page
            notice = got.text[got.text.index('class="error skipped-models"'):]
            assert "1 registered model cannot be read" in notice and key in notice
            assert ">intact<" in got.text
