"""The benchmark page: ``benchmarks/run_all.py`` regenerates its own block and keeps every
section written by hand; the README's headline table comes from the same figures."""

from __future__ import annotations

import datetime as dt
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def run_all():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "benchmarks" / "run_all.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_all"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _results(run_all, mlflow: bool = True):  # type: ignore[no-untyped-def]
    mib = run_all.MIB
    res = run_all.Results("quick", dt.datetime(2026, 11, 23, tzinfo=dt.timezone.utc), {"cpu": "test cpu, 2 cores"}, 1.0)
    res.growth = {"logical": [8 * mib, 17 * mib], "casstore": [8 * mib, 10 * mib]}
    if mlflow:
        res.growth["mlflow"] = [8 * mib, 17 * mib]
    res.ingest = {"casstore, new content": {1: 100.0}, "casstore, already stored": {1: 900.0},
                  "shutil.copyfile": {1: 1000.0}, "one BLAKE3 pass": {1: 1500.0}}
    res.s3_skipped = "not measured in this test"
    return res


OUTPUTS = {
    "bench_one.py": "fresh 1 GiB\n  casstore / copy = 1.10   (goal <= 1.25: met)\n"
                    "  copy / casstore again = 3.20x faster   (goal >= 4: MISSED)\n",
    "bench_two.py": "| measure | casstore vs MLflow | ratio | goal | met |\n|---|---|---|---|---|\n"
                    "| store growth | 4 MB vs 15 MB | 0.29 | <= 0.30 | yes |\n| load | 0.9 s vs 0.5 s | 1.8 | <= 1.20 | NO |\n",
    "bench_three.py": "verify 0.57 s, 2.50x the floor (goal <= 1.5x at 2 GiB: not judged at the quick size)\n",
}


def _with_scripts(run_all, res):  # type: ignore[no-untyped-def]
    """Three scripts, as a new one would be registered (a line in SCRIPTS), with their outputs."""
    res.scripts = [run_all.ScriptRun(run_all.Script(name, ()), (), seconds=3.0, status=0, output=out)
                   for name, out in OUTPUTS.items()]
    res.scripts.append(run_all.ScriptRun(run_all.Script("bench_four.py", ()), (), skipped="mlflow is not installed"))
    return res


def test_the_page_is_written_whole_with_a_section_per_script_and_the_goals(tmp_path: Path, run_all, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(run_all.ScriptRun, "method", property(lambda self: f"What {self.script.name} measures."))
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\n## The third session\n\nMeasured by hand: 1.10x.\n")
    run_all.write_page(page, run_all.render_page(_with_scripts(run_all, _results(run_all)), [("g.png", "Growth")], "img"))
    text = page.read_text()
    assert text.startswith("# Benchmarks\n") and "third session" not in text  # nothing kept from before
    assert "| 2 | 17.0 | 10.0 | 17.0 |" in text  # the growth table, MLflow column included
    assert "![Growth](img/g.png)" in text and "python benchmarks/run_all.py" in text
    for name in OUTPUTS:  # each script: a section with its anchor, what it measures, its whole output
        anchor = name.removesuffix(".py").replace("_", "-")
        assert f"### `{name}` {{#{anchor}}}" in text and f"What {name} measures." in text
        assert all(f"    {line}".rstrip() in text for line in OUTPUTS[name].splitlines())
    assert "Skipped: mlflow is not installed." in text
    assert "2 of 4 goals judged in this run are met (1 more not judged at these sizes)." in text
    assert "| [`bench_one.py`](#bench-one) | casstore / copy = 1.10 | <= 1.25 | met |" in text
    assert "| [`bench_one.py`](#bench-one) | copy / casstore again = 3.20x faster | >= 4 | **missed** |" in text
    assert ("| [`bench_two.py`](#bench-two) | store growth: casstore vs MLflow 4 MB vs 15 MB, ratio 0.29 "
            "| <= 0.30 | met |") in text
    assert "| load: casstore vs MLflow 0.9 s vs 0.5 s, ratio 1.8 | <= 1.20 | **missed** |" in text
    assert "| verify 0.57 s, 2.50x the floor | <= 1.5x at 2 GiB | not judged |" in text

    res = _results(run_all, mlflow=False)
    run_all.write_page(page, run_all.render_page(res, [], "img"))
    second = page.read_text()
    assert "MLflow column skipped" in second and "No benchmark script ran." in second


def test_no_docs_page_narrates_how_it_was_made() -> None:
    """Pages say what casstore does and today's figures; history lives in git."""
    import re

    narration = re.compile(r"\bsessions?\b|\bissues? ?#?\d+|\btables? keyed by issue", re.I)
    found = [f"{p.name}:{n}: {line.strip()}" for p in [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
             for n, line in enumerate(p.read_text().splitlines(), 1) if narration.search(line)]
    assert found == []


def test_readme_headline_is_replaced_between_its_markers_only(tmp_path: Path, run_all) -> None:  # type: ignore[no-untyped-def]
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n\n{run_all.README_BEGIN}\nold\n{run_all.README_END}\n\nrest\n")
    run_all.write_readme(readme, _results(run_all))
    text = readme.read_text()
    assert text.startswith("intro\n\n") and text.endswith("\n\nrest\n") and "old" not in text
    assert "| store size after 2 versions of a 8 MiB model file | 10 MiB | MLflow: 17 MiB | 0.59 |" in text


def test_the_readme_has_the_markers() -> None:
    text = (ROOT / "README.md").read_text()
    assert "<!-- headline figures: generated by benchmarks/run_all.py -->" in text
    assert "<!-- end of headline figures -->" in text
