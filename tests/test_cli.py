"""The `casstore` command, each subcommand through its entry point, output checked."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3
from click.testing import CliRunner, Result

from casstore.cli import cli
from casstore.objects import open_store
from casstore.runs import RunStore
from test_gc import SMALL, age
REPO = Path(__file__).resolve().parents[1]


def run(*args: str, store: Path | None = None, input: bytes | None = None) -> Result:
    argv = list(args) + (["--store", str(store)] if store is not None else [])
    return CliRunner().invoke(cli, argv, input=input)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


class Store:
    """A store with two experiments, runs sharing data, a logged model and a registered version."""

    def __init__(self, root: Path) -> None:
        rng = random.Random(3)
        self.root = root
        self.runs = RunStore(open_store(str(root), chunker=SMALL))
        self.big = rng.randbytes(60_000)
        exp = self.runs.get_or_create_experiment("fraud")
        a = self.runs.create_run(exp, run_name="baseline", tags={"mlflow.source.git.commit": "abc123",
                                                                  "casstore.python": "3.11.7", "team": "risk"})
        a.log_param("lr", "0.1")
        a.log_param("model", "rf")
        a.log_metric("auc", 0.91, 0, 1)
        a.log_bytes("data/big.bin", self.big)
        a.log_bytes("notes.txt", b"first run\n")
        a.bind_artifact("m/model.bin", *self.runs.objects.put_bytes(b"weights-v1" * 300))  # a model's file is stored
        w = self.runs.get_run(a.run_id).artifacts["m/model.bin"]
        entry = {"v": 1, "kind": "model", "name": "m", "run_id": a.run_id, "created": "2025-01-01",
                 "flavors": {"python_function": {"loader_module": "casstore.sklearn"}, "sklearn": {"version": "1.5"}},
                 "requirements": ["scikit-learn==1.5.2"],
                 "files": {"model.bin": {"digest": w.digest, "size": w.size}}}
        self.model = a.add_model("m", entry)
        self.a_digest = a.end()
        from casstore.registry import Registry

        Registry(self.runs.backend).create_version("fraud-model", self.model, run_id=a.run_id)
        b = self.runs.create_run(exp, run_name="tuned")
        b.log_param("lr", "0.05")
        b.log_param("model", "rf")
        b.log_param("depth", "8")
        b.log_metric("auc", 0.95, 0, 2)
        self.edited = self.big[:30_000] + b"EDIT" + self.big[30_000:]
        b.log_bytes("data/big.bin", self.edited)
        b.log_bytes("extra.csv", b"x,y\n1,2\n")
        b.end()
        other = self.runs.get_or_create_experiment("other")
        c = self.runs.create_run(other, run_name="copy")
        c.log_bytes("big-copy.bin", self.big)
        c.end()
        self.a, self.b, self.c = a.run_id, b.run_id, c.run_id


@pytest.fixture
def st(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


# ---- help and errors --------------------------------------------------------------------------


def all_commands() -> list[list[str]]:
    import click

    out = []
    ctx = click.Context(cli)
    for name in cli.list_commands(ctx):
        cmd = cli.get_command(ctx, name)
        if isinstance(cmd, click.Group):
            out += [[name, sub] for sub in cmd.commands]
        out.append([name])
    return out


def command_modules() -> list[Any]:
    """Every module of ``casstore.cli`` that defines commands (its ``COMMANDS``)."""
    import importlib
    import pkgutil

    import casstore.cli

    modules = [importlib.import_module(f"casstore.cli.{m.name}")
               for m in pkgutil.iter_modules(casstore.cli.__path__) if not m.name.startswith("_")]
    return [m for m in modules if hasattr(m, "COMMANDS")]


def test_the_command_table_lists_every_command_of_every_module() -> None:
    """``casstore --help`` lists commands from a table without loading their modules: the
    table must name each command of each module, in its module, with its own help."""
    from casstore.cli import COMMANDS

    defined = {cmd.name: (mod.__name__.rsplit(".", 1)[1], cmd.get_short_help_str(10**6))
               for mod in command_modules() for cmd in mod.COMMANDS}
    assert len(defined) == sum(len(mod.COMMANDS) for mod in command_modules())  # no name defined twice
    assert COMMANDS == defined


@pytest.mark.parametrize("width", [60, 80, 100, 200])
def test_help_lists_the_commands_as_the_loaded_commands_would(width: int) -> None:
    """The listing made from the table is the one click makes from the commands themselves."""
    import click

    loaded = click.Group("casstore", commands=[cmd for mod in command_modules() for cmd in mod.COMMANDS])
    listings = []
    for group in (cli, loaded):
        ctx = click.Context(group, terminal_width=width)
        formatter = ctx.make_formatter()
        group.format_commands(ctx, formatter)
        listings.append(formatter.getvalue())
    assert listings[0] == listings[1]
    assert [line.split()[0] for line in listings[0].splitlines()[1:]] == sorted(loaded.commands)


def test_a_mistyped_command_is_refused_with_a_suggestion() -> None:
    r = run("verfy")
    assert r.exit_code == 2 and "No such command 'verfy'. Did you mean 'verify'?" in r.stderr


@pytest.mark.parametrize("argv", all_commands(), ids=" ".join)
def test_every_command_has_help(argv: list[str]) -> None:
    r = ok(run(*argv, "--help"))
    assert "Usage: " in r.stdout
    assert "Examples:" in r.stdout
    if len(argv) > 1 or argv[0] != "models":
        assert "--store" in r.stdout or argv == ["models"]


def test_errors_are_one_line_and_debug_shows_the_traceback(tmp_path: Path, st: Store) -> None:
    r = run("show", "0" * 32, store=st.root)
    assert r.exit_code == 1
    assert r.stderr.startswith("casstore: error: no run ") and r.stderr.count("\n") == 1
    assert "Traceback" not in r.stderr
    r = run("runs", store=tmp_path / "nowhere")
    assert r.exit_code == 1 and "no casstore store" in r.stderr and not (tmp_path / "nowhere").exists()
    r = run("show", "zz", store=st.root)
    assert r.exit_code == 1 and "is not a run id" in r.stderr
    r = CliRunner().invoke(cli, ["--debug", "show", "0" * 32, "--store", str(st.root)])
    assert r.exit_code == 1 and type(r.exception).__name__ == "ObjectNotFoundError"
    r = run("nosuchcommand")
    assert r.exit_code == 2


@pytest.mark.parametrize("uri", ["sqlite:///mlflow.db", "http://127.0.0.1:5000", "databricks"])
def test_an_mlflow_tracking_uri_as_store_says_what_to_do(uri: str, tmp_path: Path) -> None:
    """An MLflow user's habit, ``--store`` set to the tracking server or database: one line
    saying casstore has no server, what a store is, and how to import the MLflow runs."""
    for argv in (["runs", "--store", uri], ["--store", uri, "ui"]):
        r = CliRunner().invoke(cli, argv)
        assert r.exit_code == 1 and r.stderr.count("\n") == 1, r.stderr
        assert "names an MLflow tracking server or database" in r.stderr
        assert "Pass --store with one" in r.stderr and f"casstore import-mlflow --mlflow-uri {uri}" in r.stderr


def test_the_console_entry_point_in_a_subprocess(st: Store, tmp_path: Path) -> None:
    """The real process: exit codes, one-line errors, no progress bars in a pipe."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "CI": ""}
    cmd = [sys.executable, "-c", "from casstore.cli import main; main()"]
    p = subprocess.run([*cmd, "verify", "--all", "--store", str(st.root)], capture_output=True, env=env, timeout=120)
    assert p.returncode == 0 and p.stdout.startswith(b"OK: verified") and p.stderr == b""
    p = subprocess.run([*cmd, "show", "f" * 32, "--store", str(st.root)], capture_output=True, env=env, timeout=120)
    assert p.returncode == 1 and p.stderr.decode().startswith("casstore: error:") and b"Traceback" not in p.stderr
    p = subprocess.run([*cmd, "cat", st.a, "notes.txt", "--store", str(st.root)], capture_output=True, env=env, timeout=120)
    assert p.returncode == 0 and p.stdout == b"first run\n"


# ---- runs, show, ls, cat, get ----------------------------------------------------------------------


def test_runs_table_and_json(st: Store) -> None:
    r = ok(run("runs", store=st.root))
    header, *rows = r.stdout.splitlines()
    assert header.split() == ["id", "name", "status", "start", "params", "metrics", "digest"]
    assert len(rows) == 3
    assert any(st.a in row and "baseline" in row and "FINISHED" in row and st.a_digest in row
               and "lr=0.1" in row and "auc=0.91" in row for row in rows)
    runs = json.loads(ok(run("runs", "--json", store=st.root)).stdout)
    assert {x["run_id"] for x in runs} == {st.a, st.b, st.c}
    a = next(x for x in runs if x["run_id"] == st.a)
    for field in ("run_name", "experiment_id", "experiment_name", "status", "start_time", "end_time", "digest",
                  "params", "metrics", "tags", "sealed", "deleted", "artifacts", "models"):
        assert field in a
    assert a["digest"] == st.a_digest and a["params"] == {"lr": "0.1", "model": "rf"} and a["metrics"] == {"auc": 0.91}
    assert a["experiment_name"] == "fraud" and a["models"] == {"m": st.model}


def test_runs_filters(st: Store) -> None:
    runs = json.loads(ok(run("runs", "--experiment", "fraud", "--json", store=st.root)).stdout)
    assert {x["run_id"] for x in runs} == {st.a, st.b}
    runs = json.loads(ok(run("runs", "--filter", "metrics.auc > 0.93", "--json", store=st.root)).stdout)
    assert [x["run_id"] for x in runs] == [st.b]
    r = run("runs", "--experiment", "nope", store=st.root)
    assert r.exit_code == 1 and "no experiment named 'nope'" in r.stderr
    r = run("runs", "--filter", "metrics.auc >>> 1", store=st.root)
    assert r.exit_code == 1 and r.stderr.startswith("casstore: error:")


def test_show_by_prefix_text_and_json(st: Store) -> None:
    r = ok(run("show", st.a[:8], store=st.root))
    assert f"run         {st.a}" in r.stdout and st.a_digest in r.stdout
    assert re.search(r"^  lr +0\.1$", r.stdout, re.M) and "data/big.bin" in r.stdout and st.model in r.stdout
    d = json.loads(ok(run("show", st.a, "--json", store=st.root)).stdout)
    assert d["artifacts"]["notes.txt"] == {"digest": blake3(b"first run\n").hexdigest(), "size": 10}


def test_ls_lists_entries_with_sizes_and_digests(st: Store) -> None:
    r = ok(run("ls", st.a, store=st.root))
    assert r.stdout.split() == ["data/", "m/", "notes.txt"]
    r = ok(run("ls", st.a, "data", "-l", store=st.root))
    size, digest, name = r.stdout.split()
    assert (int(size), digest, name) == (len(st.big), blake3(st.big).hexdigest(), "data/big.bin")
    items = json.loads(ok(run("ls", st.a, "-R", "--json", store=st.root)).stdout)
    assert [i["path"] for i in items] == ["data/big.bin", "m/model.bin", "notes.txt"]
    assert run("ls", st.a, "nope", store=st.root).exit_code == 1


def test_cat_writes_the_verified_bytes(st: Store) -> None:
    r = ok(run("cat", st.a, "data/big.bin", store=st.root))
    assert r.stdout_bytes == st.big
    assert run("cat", st.a, "missing.txt", store=st.root).exit_code == 1


def test_get_a_file_and_a_directory(st: Store, tmp_path: Path) -> None:
    dest = tmp_path / "out.bin"
    ok(run("get", st.a, "data/big.bin", "-o", str(dest), store=st.root))
    assert dest.read_bytes() == st.big
    ok(run("get", st.a, "-o", str(tmp_path / "all"), store=st.root))
    assert (tmp_path / "all" / "data" / "big.bin").read_bytes() == st.big
    assert (tmp_path / "all" / "notes.txt").read_bytes() == b"first run\n"
    ok(run("get", st.a, "data", "-o", str(tmp_path / "d"), store=st.root))
    assert (tmp_path / "d" / "big.bin").read_bytes() == st.big


def test_get_never_leaves_an_unverified_file(st: Store, tmp_path: Path) -> None:
    chunk = st.runs.objects.chunk_digests(blake3(st.big).hexdigest())[-1]
    p = st.root / st.runs.objects.layout.chunk_key(chunk)
    p.write_bytes(b"X" + p.read_bytes()[1:])
    r = run("get", st.a, "data/big.bin", "-o", str(tmp_path / "x.bin"), store=st.root)
    assert r.exit_code == 1 and "integrity check failed" in r.stderr
    assert not list(tmp_path.glob("*x.bin*"))


# ---- log, delete-run ---------------------------------------------------------------------------------


def test_log_files_into_a_new_run_and_an_open_one(tmp_path: Path) -> None:
    store = tmp_path / "new-store"
    (tmp_path / "model.pkl").write_bytes(b"pickle" * 1000)
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "loss.png").write_bytes(b"png")
    out = json.loads(ok(run("log", str(tmp_path / "model.pkl"), str(tmp_path / "plots"), "--experiment", "shell",
                            "--name", "from-shell", "--json", store=store)).stdout)
    assert out["sealed"] and len(out["digest"]) == 64
    assert {a["path"] for a in out["artifacts"]} == {"model.pkl", "plots/loss.png"}
    view = RunStore(open_store(str(store))).get_run(out["run_id"])
    assert view.run_name == "from-shell" and view.digest == out["digest"]
    assert view.artifacts["model.pkl"].digest == blake3(b"pickle" * 1000).hexdigest()
    assert "casstore.python" in view.tags  # the environment is recorded

    r = ok(run("log", str(tmp_path / "model.pkl"), "--keep-open", store=store))
    run_id = r.stdout.split()[-2]
    assert r.stdout.strip().endswith("(open)")
    ok(run("log", str(tmp_path / "plots" / "loss.png"), "--run", run_id[:10], "--path", "figures", store=store))
    view = RunStore(open_store(str(store))).get_run(run_id)
    assert set(view.artifacts) == {"model.pkl", "figures/loss.png"} and not view.sealed
    # a path is bound once: other content there is refused, in one line
    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "model.pkl").write_bytes(b"other")
    r = run("log", str(tmp_path / "v2" / "model.pkl"), "--run", run_id, store=store)
    assert r.exit_code == 1 and "already bound" in r.stderr and r.stderr.count("\n") == 1
    # a sealed run cannot be resumed
    r = run("log", str(tmp_path / "model.pkl"), "--run", out["run_id"], store=store)
    assert r.exit_code == 1 and "sealed" in r.stderr


def test_delete_run_is_recorded_and_names_registry_pins(st: Store) -> None:
    r = ok(run("delete-run", st.a, "--reason", "wrong split", store=st.root))
    assert f"run {st.a} deleted (wrong split)" in r.stdout
    assert "registered model fraud-model version 1" in r.stdout
    assert st.runs.is_deleted(st.a)
    runs = json.loads(ok(run("runs", "--json", store=st.root)).stdout)
    assert st.a not in {x["run_id"] for x in runs}
    deleted = json.loads(ok(run("runs", "--deleted", "--json", store=st.root)).stdout)
    assert [x["run_id"] for x in deleted] == [st.a]
    assert "already deleted" in ok(run("delete-run", st.a, store=st.root)).stderr


# ---- audit, diff, du ------------------------------------------------------------------------------------


def test_audit_json_markdown_and_text(st: Store) -> None:
    a = json.loads(ok(run("audit", st.a, "--json", store=st.root)).stdout)
    assert a["format"] == "casstore-audit" and a["run"]["digest"] == st.a_digest
    assert a["params"] == {"lr": "0.1", "model": "rf"} and a["metrics"] == {"auc": 0.91}
    assert a["tags"]["code"] == {"mlflow.source.git.commit": "abc123"}
    assert a["tags"]["environment"] == {"casstore.python": "3.11.7"} and a["tags"]["other"]["team"] == "risk"
    arts = {x["path"]: x for x in a["artifacts"]}
    assert arts["data/big.bin"] == {"path": "data/big.bin", "size": len(st.big), "blake3": blake3(st.big).hexdigest()}
    (m,) = a["models"]
    assert m["digest"] == st.model and set(m["flavors"]) == {"python_function", "sklearn"}
    assert m["requirements"] == ["scikit-learn==1.5.2"]
    assert m["registry_versions"] == [{"name": "fraud-model", "version": 1, "aliases": []}]
    assert a["verification"]["ok"] is True and a["verification"]["checked"]["files"] == 3

    md = ok(run("audit", st.a, "--markdown", store=st.root)).stdout
    assert md.startswith(f"# Audit of run {st.a}") and f"`{st.a_digest}`" in md
    assert f"| `data/big.bin` | {len(st.big)} | `{blake3(st.big).hexdigest()}` |" in md
    assert "fraud-model v1" in md and "PASSED" in md
    text = ok(run("audit", st.a, store=st.root)).stdout
    assert f"run digest   {st.a_digest}" in text and "verification PASSED" in text


def test_audit_of_a_damaged_run_fails(st: Store) -> None:
    # a small artifact is held in its binding record (format version 3): that object is the file
    from casstore.runs import layout

    assert st.runs.get_run(st.a).artifacts["notes.txt"].inline
    (st.root / layout.artifact_key(st.a, "notes.txt")).unlink()
    r = run("audit", st.a, "--json", store=st.root)
    assert r.exit_code == 1
    v = json.loads(r.stdout)["verification"]
    assert not v["ok"] and {"run": st.a, "artifact": "notes.txt"} in v["problems"][0]["affects"]


def test_diff_shows_what_changed_and_the_shared_chunks(st: Store) -> None:
    d = json.loads(ok(run("diff", st.a, st.b, "--json", store=st.root)).stdout)
    assert d["params"] == {"added": {"depth": "8"}, "removed": {}, "changed": {"lr": {"a": "0.1", "b": "0.05"}}}
    assert d["metrics"]["changed"] == {"auc": {"a": 0.91, "b": 0.95}}
    assert set(d["artifacts"]["added"]) == {"extra.csv"}
    assert set(d["artifacts"]["removed"]) == {"notes.txt", "m/model.bin"}
    ch = d["artifacts"]["changed"]["data/big.bin"]
    assert ch["a"]["digest"] == blake3(st.big).hexdigest() and ch["b"]["digest"] == blake3(st.edited).hexdigest()
    assert 0 < ch["shared_chunks"] < ch["chunks_b"] and ch["shared_bytes"] > len(st.big) // 2
    assert d["models"]["removed"] == {"m": st.model}
    text = ok(run("diff", st.a, st.b, store=st.root)).stdout
    assert "~ lr: 0.1 -> 0.05" in text and "+ depth = 8" in text and "+ extra.csv" in text
    assert f"of {ch['chunks_b']} chunks shared" in text
    same = json.loads(ok(run("diff", st.a, st.a, "--json", store=st.root)).stdout)
    assert same["unchanged_artifacts"] == 3 and not same["artifacts"]["changed"]


def test_du_accounts_logical_and_physical_bytes(st: Store) -> None:
    d = json.loads(ok(run("du", "--json", store=st.root)).stdout)
    runs = {r["run_id"]: r for r in d["runs"]}
    assert runs[st.c]["logical"] == len(st.big)
    assert runs[st.c]["exclusive"] == 0  # every chunk of its one file is also in run a
    assert runs[st.a]["logical"] == len(st.big) + 10 + 3000
    total = d["total"]
    assert total["runs"] == 3 and total["logical"] == sum(r["logical"] for r in d["runs"])
    assert total["physical"] < total["logical"] and total["dedup_ratio"] > 1.9
    assert {e["name"] for e in d["experiments"]} == {"fraud", "other"}
    top = d["top_files"][0]
    assert top["digest"] == blake3(st.big).hexdigest() and top["bindings"] == 2 and top["saved"] == len(st.big)
    assert d["top_chunks"] and d["store"]["unreferenced_bytes"] == 0
    # physical: the chunks, and the small artifacts held in run records (notes.txt, extra.csv)
    assert d["store"]["inline_bytes"] == 10 + 8
    assert d["store"]["stored_bytes"] + d["store"]["inline_bytes"] == total["physical"]
    text = ok(run("du", store=st.root)).stdout
    assert "dedup ratio" in text and "baseline" in text and "fraud" in text
    one = json.loads(ok(run("du", st.c[:8], "--json", store=st.root)).stdout)
    assert [r["run_id"] for r in one["runs"]] == [st.c]


def test_du_counts_files_stored_as_one_chunk(tmp_path: Path) -> None:
    """Files of one chunk have no recipe (format version 2): du sizes them from the chunk
    that is the file, whether it is small enough to be sure of that or not."""
    from casstore.backend import LocalBackend
    from casstore.maintenance.du import disk_usage
    from casstore.objects import StoreConfig
    from casstore.objects.config import CONFIG_KEY
    from casstore.registry import Registry

    LocalBackend(tmp_path / "s").put_if_absent(CONFIG_KEY, StoreConfig(version=2, chunker=SMALL).to_json())
    store = RunStore(open_store(str(tmp_path / "s"), chunker=SMALL))
    assert store.objects.config.version == 2
    one, other, weights = (random.Random(n).randbytes(size) for n, size in ((5000, 5000), (4096, 4096), (11, 6000)))
    big = random.Random(1).randbytes(40_000)
    exp = store.get_or_create_experiment("du")
    a = store.create_run(exp)
    for path, data in (("one.bin", one), ("tiny.txt", b"0123456789"), ("big.bin", big)):
        a.log_bytes(path, data)
    a.end()
    b = store.create_run(exp)
    b.log_bytes("one.bin", one)
    b.log_bytes("other.bin", other)
    b.end()
    c = store.create_run(exp)
    w = c.log_bytes("m/model.bin", weights)
    model = c.add_model("m", {"v": 1, "kind": "model", "files": {"model.bin": {"digest": w.digest, "size": w.size}}})
    c.end()
    Registry(store.backend).create_version("m", model)
    store.delete_run(c.run_id)  # its model file stays, for the registry
    assert list(store.backend.list("files/")) == [store.objects.layout.recipe_key(blake3(big).hexdigest())]

    r = disk_usage(store)
    runs = {u.run_id: u for u in r.runs}
    assert (runs[a.run_id].logical, runs[a.run_id].unique, runs[a.run_id].exclusive) == (45_010, 45_010, 40_010)
    assert (runs[b.run_id].logical, runs[b.run_id].unique, runs[b.run_id].exclusive) == (9096, 9096, 4096)
    assert (r.total.logical, r.total.physical) == (54_106, 49_106)
    assert r.store["chunks"] == 4 + len(store.objects.chunk_digests(blake3(big).hexdigest()))
    assert r.store["stored_bytes"] == 49_106 + 6000
    assert r.store["referenced_bytes"] == 49_106 + 6000 and r.store["unreferenced_bytes"] == 0
    assert r.store["models"] == 1
    (top,) = r.top_files
    assert top["digest"] == blake3(one).hexdigest() and top["bindings"] == 2 and top["saved"] == 5000


# ---- gc --------------------------------------------------------------------------------------------------


def test_gc_after_delete_run_reclaims_only_what_nothing_needs(st: Store) -> None:
    ok(run("delete-run", st.b, store=st.root))
    before = json.loads(ok(run("du", "--json", store=st.root)).stdout)["store"]
    assert before["unreferenced_bytes"] > 0
    age(st.root)
    g = json.loads(ok(run("gc", "--grace", "0s", "--dry-run", "--json", store=st.root)).stdout)
    assert g["dry_run"] and g["deleted_total"] == 0 and g["marked_total"] > 0
    r = ok(run("gc", "--grace", "0s", store=st.root))
    assert "deleted 0 objects" in r.stdout and "marked" in r.stdout
    g = json.loads(ok(run("gc", "--grace", "0s", "--json", store=st.root)).stdout)
    for field in ("deleted", "deleted_bytes", "deleted_total", "marked", "marked_bytes", "kept_fresh", "grace",
                  "started", "pending_records", "exact"):
        assert field in g
    # the edited file's recipe; extra.csv, one chunk, had none: its chunk was the file
    assert g["deleted"]["files"] == 1 and g["exact"]
    assert not st.runs.objects.has_file(blake3(b"x,y\n1,2\n").hexdigest())
    assert g["deleted_bytes"] > before["unreferenced_bytes"]  # the chunks, and the recipe
    after = json.loads(ok(run("du", "--json", store=st.root)).stdout)["store"]
    assert after["unreferenced_bytes"] == 0
    assert ok(run("verify", "--all", store=st.root)).stdout.startswith("OK")
    assert run("gc", "--grace", "soon", store=st.root).exit_code == 1


# ---- models -----------------------------------------------------------------------------------------------


def test_models_commands(st: Store) -> None:
    models = json.loads(ok(run("models", "list", "--json", store=st.root)).stdout)
    assert models == [{"name": "fraud-model", "latest_version": 1, "aliases": {}, "tags": {}, "description": None,
                       "creation_timestamp": models[0]["creation_timestamp"]}]
    versions = json.loads(ok(run("models", "versions", "fraud-model", "--json", store=st.root)).stdout)
    assert [(v["version"], v["model_digest"], v["run_id"]) for v in versions] == [(1, st.model, st.a)]
    r = ok(run("models", "alias", "fraud-model", "champion", "1", store=st.root))
    assert f"models:/fraud-model@champion -> version 1 ({st.model})" in r.stdout
    shown: dict[str, Any] = json.loads(ok(run("models", "show", "models:/fraud-model@champion", "--json",
                                               store=st.root)).stdout)
    assert shown["model_digest"] == st.model and set(shown["flavors"]) == {"python_function", "sklearn"}
    assert shown["registry_versions"][0]["aliases"] == ["champion"]
    text = ok(run("models", "show", f"runs:/{st.a}/m", store=st.root)).stdout
    assert st.model in text and "model.bin" in text and "fraud-model v1" in text
    assert "champion->1" in ok(run("models", "list", store=st.root)).stdout
    r = run("models", "show", "models:/nope/1", store=st.root)
    assert r.exit_code == 1 and r.stderr.startswith("casstore: error:")


def test_progress_bars_only_on_a_terminal_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    from casstore.cli._common import Progress, is_interactive

    class Tty:
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("CI", raising=False)
    with open(os.devnull, "w") as devnull:
        assert is_interactive(Tty()) and not is_interactive(devnull)
    monkeypatch.setenv("CI", "true")
    assert not is_interactive(Tty())
    with Progress() as p:  # disabled: callbacks are no-ops, and a task asks for no callback
        p.callback("stage", 0, 10)
        p.callback("stage", 5)
        with p.task("bytes", 100) as advance:
            assert advance is None
    assert not p.enabled


def test_gc_reports_the_packs_it_marks_and_deletes(tmp_path: Path) -> None:
    """In a store of the packs layout, the packs gc marks and deletes are counted in its totals
    and named in its report, as chunks, files and model entries are: a run that deleted a
    pack of 200 kB says so instead of "deleted 0 objects"."""
    root = tmp_path / "store"
    store = RunStore(open_store(str(root), layout="packs", stat_cache=False))
    exp = store.get_or_create_experiment("gc")
    runs = []
    for seed in (1, 2):
        h = store.create_run(exp)
        h.log_bytes(f"model-{seed}.bin", random.Random(seed).randbytes(200_000))
        h.end()
        runs.append(h.run_id)
    ok(run("delete-run", runs[0], store=root))

    def passes() -> Result:
        for p in root.rglob("*"):  # every stored object looks an hour old: the grace period is over
            if p.is_file() and p.parts[len(root.parts)] in ("packs", "files", "chunk-index"):
                os.utime(p, (p.stat().st_mtime - 3600,) * 2)
        return ok(run("gc", "--grace", "0s", store=root))

    reports = [passes().stdout for _ in range(4)]
    marked = [r for r in reports if re.search(r"^marked 1 unreferenced objects .*, 1 packs$", r, re.M)]
    deleted = [r for r in reports if re.search(r"^deleted 1 objects \(\d+(\.\d+)? KiB\): 0 chunks, 0 files, 0 model entries, 1 packs$", r, re.M)]
    assert len(marked) == 1 and len(deleted) == 1, reports
    assert reports.index(marked[0]) < reports.index(deleted[0])
    g = json.loads(ok(run("gc", "--grace", "0s", "--dry-run", "--json", store=root)).stdout)
    assert g["packs"] == 1 and g["marked_total"] == 0 and g["kept_total"] == 0
    assert ok(run("verify", "--all", store=root)).stdout.startswith("OK")
