"""Every code example of the documentation runs, so the docs cannot drift from the code.

Each page of ``docs/`` (and the README) runs in a fresh temporary directory of its
own, its code blocks in the order they appear:

- ```` ```python ```` blocks run in one namespace per page (a later block sees the
  names of an earlier one), with casstore's tracking state reset before the page;
- ```` ```bash ```` blocks run with ``bash -euo pipefail`` in the same directory, so
  they see the files and the default store (``./casstore``) the Python blocks made;
  variables a block exports are kept for the next bash block of the page;
- ```` ```text ````, ```` ```mermaid ````, ```` ```json ````, ```` ```yaml ```` and
  unlabelled blocks are not executed: they show output, diagrams, layouts and record
  formats. Any other label fails the test, so no example can slip by unexecuted.

A block right after ``<!-- docs-test: needs MODULE -->`` runs only where MODULE is
installed (MLflow, for the import examples: it is in the ``bench`` extra, not in
``test``); where it is not, the block is reported as skipped.

Two exceptions, both explicit: the README's first block (the install-and-test
commands, which CI runs itself) is checked to be exactly those two commands; and a
block right after ``<!-- docs-test: skip (reason) -->`` is not executed (the reason
is required, and the test counts such blocks so they stay few).

A page with ``<!-- docs-test: s3 bucket=NAME -->`` runs against a real S3 server on
loopback (moto), with a bucket ``NAME`` and the server's endpoint and credentials in
the environment, as a user's would be.

The docstring examples (``>>>``) of the modules the API reference shows run as
doctests below.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXECUTED = {"python", "bash"}
NOT_EXECUTED = {"text", "mermaid", "json", "yaml", ""}
README_COMMANDS = (
    'pip install ".[sklearn]" && cd examples && python quickstart.py\n'
    'pip install -U pip && pip install ".[test]" && python -m pytest\n'
)
#: at most this many skipped blocks in all the docs (each needs its reason in the page)
MAX_SKIPPED = 6
BLOCK_TIMEOUT = 300

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+)(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)(?P=fence)\s*$",
                    re.M | re.S)
_SKIP = re.compile(r"<!--\s*docs-test:\s*skip\s*\((?P<reason>[^)]+)\)\s*-->\s*$")
_NEEDS = re.compile(r"<!--\s*docs-test:\s*needs\s+(?P<module>[\w.]+)\s*-->\s*$")
_S3 = re.compile(r"<!--\s*docs-test:\s*s3\s+bucket=(?P<bucket>[a-z0-9.-]+)\s*-->")


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    lang: str
    code: str
    skip_reason: str | None
    needs: str | None = None


def blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    out = []
    for m in _FENCE.finditer(text):
        before = text[: m.start()].rstrip().rsplit("\n", 1)[-1]
        skip = _SKIP.search(before)
        needs = _NEEDS.search(before)
        body = "\n".join(ln[len(m["indent"]):] for ln in m["body"].split("\n"))
        out.append(Block(path.name, text.count("\n", 0, m.start()) + 1, m["lang"].lower(), body,
                         skip["reason"].strip() if skip else None, needs["module"] if needs else None))
    return out


def pages() -> list[Path]:
    return sorted(DOCS.glob("*.md")) + [ROOT / "README.md"]


def test_every_block_is_of_a_known_kind() -> None:
    bad = [f"{b.page}:{b.line} ```{b.lang}" for p in pages() for b in blocks(p)
           if b.lang not in EXECUTED | NOT_EXECUTED]
    assert not bad, f"code blocks of a kind the docs test does not run (use python, bash or text): {bad}"
    installs = [f"{b.page}:{b.line}" for p in pages() for b in blocks(p)
                if b.lang in EXECUTED and not b.skip_reason and re.search(r"\b(pip|apt-get|conda) install\b", b.code)
                and not (p.name == "README.md" and b.code == README_COMMANDS)]
    assert not installs, f"installation commands belong in ```text blocks (the test must not install anything): {installs}"
    skipped = [f"{b.page}:{b.line} ({b.skip_reason})" for p in pages() for b in blocks(p) if b.skip_reason]
    assert len(skipped) <= MAX_SKIPPED, f"too many examples are not executed: {skipped}"


def test_readme_starts_with_the_two_commands() -> None:
    first = blocks(ROOT / "README.md")[0]
    assert first.lang == "bash" and first.code == README_COMMANDS


def _reset_casstore() -> None:
    from casstore.tracking import fluent, uri

    fluent._reset()
    uri._reset_tracking_uri()


def _run_bash(block: Block, cwd: Path, env: dict[str, str], env_file: Path) -> None:
    script = (f'if [ -f "{env_file}" ]; then source "{env_file}"; fi\n'
              f"{block.code}\n"
              f'export -p > "{env_file}"\n')
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=BLOCK_TIMEOUT)
    assert proc.returncode == 0, (
        f"{block.page}:{block.line}: bash block failed with status {proc.returncode}\n--- block\n{block.code}"
        f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
    )


def _shell_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CASSTORE_", "MLFLOW_"))}
    env["CI"] = "true"  # plain output: no progress bars, no colours
    # the casstore command of this checkout, and b3sum when the machine has it
    bindir = tmp.parent / "bin"
    bindir.mkdir(exist_ok=True)
    launcher = bindir / "casstore"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m casstore.cli "$@"\n')
    launcher.chmod(0o755)
    if shutil.which("b3sum") is None:
        # the same output as b3sum's (`<digest>  <name>`, and --check), from the blake3 package
        shim = bindir / "b3sum"
        shim.write_text(f'#!{sys.executable}\n' + _B3SUM_SHIM)
        shim.chmod(0o755)
    env["PATH"] = f"{bindir}{os.pathsep}{os.path.dirname(sys.executable)}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


_B3SUM_SHIM = """\
import sys
from blake3 import blake3

def digest(path):
    h = blake3(max_threads=blake3.AUTO)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

args = sys.argv[1:]
names = "--no-names" not in args
args = [a for a in args if a != "--no-names"]
if args and args[0] in ("-c", "--check"):
    bad = 0
    for name in args[1:]:
        for line in open(name, encoding="utf-8"):
            want, _, path = line.rstrip("\\n").partition("  ")
            ok = digest(path) == want
            bad += not ok
            print(f"{path}: {'OK' if ok else 'FAILED'}")
    sys.exit(1 if bad else 0)
for path in args:
    print(f"{digest(path)}  {path}" if names else digest(path))
"""


DOC_PAGES = [p for p in pages() if any(b.lang in EXECUTED and not b.skip_reason for b in blocks(p))]


@pytest.mark.parametrize("page", DOC_PAGES, ids=[p.name for p in DOC_PAGES])
def test_page_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           request: pytest.FixtureRequest) -> None:
    if page.name == "README.md":
        to_run = blocks(page)[1:]  # the first block is the install-and-test commands (checked above)
    else:
        to_run = blocks(page)
    to_run = [b for b in to_run if b.lang in EXECUTED and not b.skip_reason]
    for b in to_run:
        if re.search(r"\b(pip|apt-get|conda) install\b", b.code):
            pytest.fail(f"{b.page}:{b.line}: an executed block installs packages; put installation commands in ```text")
    if any(b.lang == "bash" for b in to_run) and shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    work = tmp_path / "work"
    work.mkdir()
    for k in [k for k in os.environ if k.startswith(("CASSTORE_", "MLFLOW_"))]:
        monkeypatch.delenv(k)
    env = _shell_env(work)
    s3 = _S3.search(page.read_text(encoding="utf-8"))
    if s3:
        from s3_server import make_bucket

        target = request.getfixturevalue("s3_env")
        make_bucket(target.endpoint_url, s3["bucket"])
        env.update(target.env)
    monkeypatch.chdir(work)
    _reset_casstore()
    namespace: dict[str, object] = {"__name__": "__docs__"}
    env_file = tmp_path / "bash-env"
    missing = []
    try:
        for b in to_run:
            if b.needs and importlib.util.find_spec(b.needs) is None:
                missing.append(f"{b.page}:{b.line}")
                continue
            if b.lang == "python":
                code = compile(b.code, f"{b.page}:{b.line}", "exec")
                with warnings.catch_warnings():
                    if b.needs:  # a foreign library's own deprecation notices are not ours to fix
                        warnings.simplefilter("ignore")
                    exec(code, namespace)  # noqa: S102 - the docs' own examples
            else:
                _run_bash(b, work, env, env_file)
        from casstore.tracking import fluent

        assert fluent.active_run() is None, f"{page.name} leaves a run open"
    finally:
        _reset_casstore()
    if missing:
        pytest.skip(f"every other example ran; not run for lack of a module: {', '.join(missing)}")


@pytest.mark.parametrize("version", [1, 2, "packs"])
def test_the_format_pages_reader_reads_an_older_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      version: int | str) -> None:
    """docs/format.md's reader handles every store version: the page runs above on a new
    (version-3) store; here on a version-1 or version-2 store, as casstore created them before,
    and on a store of the packs layout."""
    from casstore.objects import StoreConfig

    (tmp_path / "casstore").mkdir()
    config = StoreConfig(content_layout="packs") if version == "packs" else StoreConfig(version=int(version))
    (tmp_path / "casstore" / "casstore.json").write_bytes(config.to_json())
    for k in [k for k in os.environ if k.startswith(("CASSTORE_", "MLFLOW_"))]:
        monkeypatch.delenv(k)
    monkeypatch.chdir(tmp_path)
    _reset_casstore()
    namespace: dict[str, object] = {"__name__": "__docs__"}
    try:
        for b in blocks(DOCS / "format.md"):
            if b.lang == "python":
                exec(compile(b.code, f"{b.page}:{b.line}", "exec"), namespace)  # noqa: S102 - the docs' own example
    finally:
        _reset_casstore()
    if version == "packs":
        assert namespace["packed"] and not (tmp_path / "casstore" / "chunks").exists()
        return
    assert namespace["config"]["version"] == version  # type: ignore[index]
    notes = namespace["manifest"]["artifacts"]["notes.txt"]  # type: ignore[index]
    assert notes["kind"] == "file", "before version 3, a small artifact is a file of the store"
    d = notes["digest"]
    if version == 1:
        assert (tmp_path / "casstore" / "files" / d[:2] / d[2:4] / d).is_file(), "version 1 keeps every recipe"
    else:
        assert (tmp_path / "casstore" / "chunks" / d[:2] / d).is_file(), "version 2 stores a small file as its chunk"


# ---- docstring examples of the modules in the API reference ------------------------------------

API_MODULES = sorted({m for m in re.findall(r"^::: ([\w.]+)", (DOCS / "api.md").read_text(), re.M)})


def _module_of(name: str) -> object:
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            return importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
    raise ImportError(name)


@pytest.mark.parametrize("name", sorted({_module_of(n).__name__ for n in API_MODULES}))  # type: ignore[attr-defined]
def test_docstring_examples_run(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _reset_casstore()
    try:
        module = importlib.import_module(name)
        finder = doctest.DocTestFinder(exclude_empty=True)
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        for t in finder.find(module, name):
            if t.examples and (getattr(t, "filename", None) or "").startswith(str(ROOT)):
                runner.run(t)
        failed, _ = runner.summarize(verbose=False)
        assert failed == 0, f"{failed} docstring example(s) of {name} failed (see the output above)"
    finally:
        _reset_casstore()


def test_troubleshooting_covers_every_error_class() -> None:
    from casstore import exceptions

    text = (DOCS / "troubleshooting.md").read_text(encoding="utf-8")
    headed = set(re.findall(r"^#+ `(\w+)`", text, re.M))
    classes = {n for n in exceptions.__all__ if n not in ("CasstoreError", "MlflowException")}
    assert classes <= headed, f"error classes without a section in docs/troubleshooting.md: {sorted(classes - headed)}"
