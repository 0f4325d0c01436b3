"""Importing casstore and starting the ``casstore`` command load only what is used."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("numpy", "pandas", "yaml", "casstore.tracking.fluent", "casstore.tracking.client", "casstore.models.save",
         "casstore.runs", "casstore.objects.packs")


def loaded_after(code: str) -> set[str]:
    """The HEAVY modules a new interpreter holds after running ``code``."""
    probe = f"{code}\nimport sys, json\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_import_casstore_loads_the_api_on_first_use() -> None:
    assert loaded_after("import casstore") == set()
    assert loaded_after("import casstore.tracking.uri") <= {"casstore.runs"}  # not the client or fluent API
    assert loaded_after("import casstore.models.entry") == set()
    assert {"casstore.tracking.fluent", "casstore.runs"} <= loaded_after("import casstore; casstore.start_run")


def test_the_command_loads_only_its_own_layers(tmp_path: Path) -> None:
    assert loaded_after("from casstore.cli import main\ntry: main(['--help'])\nexcept SystemExit: pass") == set()
    from casstore.objects import open_store

    store = tmp_path / "store"
    open_store(str(store)).put_bytes(b"some content")  # a local store: the loose layout
    run = f"from casstore.cli import main\ntry: main(['verify', '--all', '--store', {str(store)!r}])\nexcept SystemExit as e: assert not e.code"
    assert loaded_after(run) == {"casstore.runs"}
