"""Importing casstore and starting the ``casstore`` command load only what is used."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from casstore.cli import COMMANDS

#: the command's modules: ``casstore --help`` lists every command without loading one
COMMAND_MODULES = tuple(sorted({f"casstore.cli.{module}" for module, _help in COMMANDS.values()}))
#: what writing, searching and collecting garbage load, and what some commands never need
HEAVY = ("numpy", "pandas", "yaml", "multiprocessing", "pyfastcdc", "casstore.tracking.fluent", "casstore.tracking.client",
         "casstore.models.save", "casstore.runs", "casstore.runs.handle", "casstore.runs.index",
         "casstore.objects.packs", "casstore.maintenance.gc", *COMMAND_MODULES)


def loaded_after(code: str) -> set[str]:
    """The HEAVY modules a new interpreter holds after running ``code``."""
    probe = f"{code}\nimport sys, json\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    return set(json.loads(out.splitlines()[-1]))


def command(*argv: str) -> str:
    """Code that runs ``casstore ARGV`` and requires it to succeed."""
    return f"from casstore.cli import main\ntry: main({list(argv)!r})\nexcept SystemExit as e: assert not e.code, e.code"


def test_import_casstore_loads_the_api_on_first_use() -> None:
    assert loaded_after("import casstore") == set()
    assert loaded_after("import casstore.tracking.uri") <= {"casstore.runs"}  # not the client or fluent API
    assert loaded_after("import casstore.models.entry") == set()
    assert {"casstore.tracking.fluent", "casstore.runs"} <= loaded_after("import casstore; casstore.start_run")


def test_help_lists_the_commands_without_loading_them() -> None:
    assert loaded_after(command("--help")) == set()


@pytest.mark.parametrize(("name", "modules"), [
    ("runs", {"casstore.cli.runs"}),
    ("audit", {"casstore.cli.audit", "casstore.cli.runs"}),  # an audit shows the run as `casstore show` does
    ("verify", {"casstore.cli.maintenance"}),
    ("models", {"casstore.cli.models"}),
    ("import-mlflow", {"casstore.cli.migrate"}),
    ("ui", {"casstore.cli.ui"}),
])
def test_a_command_loads_its_own_module(name: str, modules: set[str]) -> None:
    assert loaded_after(command(name, "--help")) == modules


def test_verify_loads_neither_writing_nor_searching_nor_gc(tmp_path: Path) -> None:
    """``casstore verify --all`` of a local store (the loose layout) with a run in it reads
    and hashes: no run handle, metric buffers, search index, gc, chunker or packs."""
    from casstore.runs import open_run_store

    store = tmp_path / "store"
    runs = open_run_store(str(store))
    h = runs.create_run(runs.get_or_create_experiment("e"), run_name="r")
    h.log_param("lr", "0.1")
    h.log_metric("loss", 0.5, 0, 1)
    h.log_bytes("data.bin", b"some content" * 1000)
    h.end()
    assert loaded_after(command("verify", "--all", "--store", str(store))) == {"casstore.cli.maintenance", "casstore.runs"}
