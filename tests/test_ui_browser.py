"""The UI in a real browser: Debian's chromium driven by Playwright, against `casstore ui`
started as a process on a free port. Every test fails on any console error or page error.

Screenshots of each page go to a temporary directory; with CASSTORE_UI_SCREENSHOTS=docs
they go to docs/img/ui-*.png (how the docs' pictures are made)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3
from ui_fixtures import UIStore, make_ui_store

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ui_store(tmp_path_factory: pytest.TempPathFactory) -> UIStore:
    return make_ui_store(tmp_path_factory.mktemp("ui-browser"))


@pytest.fixture(scope="module")
def server(ui_store: UIStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`casstore ui` as a user starts it, in its own process on a free port."""
    port = _free_port()
    log = tmp_path_factory.mktemp("ui-server") / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "casstore.cli", "ui", "--store", str(ui_store.path),
                                 "--port", str(port)], stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(base + "/", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"casstore ui did not start: {log.read_text()}")
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)
    assert "Traceback" not in log.read_text(), log.read_text()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium), as .ci/run does")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


#: console errors a test expects (the browser saying it refused to run a sandboxed artifact's script)
EXPECTED: list[str] = []


def watch(pg: Any) -> list[str]:
    """What goes wrong on a page: console errors, uncaught script errors, dialogs."""
    problems: list[str] = []
    pg.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    return problems


@pytest.fixture
def page(browser: Any, server: str) -> Iterator[Any]:
    """A page that records console errors, page errors and dialogs: any of them fails the test,
    except those the test put in EXPECTED (which must then appear)."""
    context = browser.new_context(base_url=server, accept_downloads=True, viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    problems = watch(pg)
    EXPECTED.clear()
    yield pg
    context.close()
    for pattern in EXPECTED:
        hits = [p for p in problems if re.fullmatch(pattern, p, re.S)]
        assert hits, f"expected a console error matching {pattern!r}, got {problems}"
        problems = [p for p in problems if p not in hits]
    assert not problems, problems


def shot(page: Any, name: str) -> None:
    """A full-page screenshot (docs/img/ui-<name>.png with CASSTORE_UI_SCREENSHOTS=docs)."""
    target = ROOT / "docs" / "img" if os.environ.get("CASSTORE_UI_SCREENSHOTS") == "docs" else Path(os.environ.get(
        "CASSTORE_UI_SCREENSHOT_DIR", "/tmp/casstore-ui-screenshots"))
    target.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target / f"ui-{name}.png"), full_page=True)


def _navigate(page: Any, locator: Any) -> None:
    """Click what loads a new page, and wait for that page (a busy machine is slow)."""
    with page.expect_navigation():
        locator.click()


def _rows(page: Any) -> list[str]:
    return [t.strip() for t in page.locator("#runs-table tbody td[data-col=run_name]").all_inner_texts()]


def test_runs_table_filters_sorts_and_hides_columns(page: Any, ui_store: UIStore) -> None:
    page.goto("/")
    _navigate(page, page.get_by_role("link", name="fraud", exact=True))
    assert _rows(page) == ["train-1", "train-0", "run-2", "run-1", "run-0"]  # newest first; the deleted run hidden
    page.fill("input[name=filter]", "Train")  # words, not a filter: runs by name, as in MLflow's search box
    _navigate(page, page.get_by_role("button", name="Search"))
    assert _rows(page) == ["train-1", "train-0"] and page.locator("#name-search").is_visible()
    page.fill("input[name=filter]", "metrics.acc > 0.5 and params.solver = 'lbfgs'")
    _navigate(page, page.get_by_role("button", name="Search"))
    assert sorted(_rows(page)) == ["run-0", "run-1"]
    _navigate(page, page.locator("#runs-table thead a", has_text="acc"))  # sort by acc, highest first
    assert _rows(page) == ["run-0", "run-1"]
    assert "order=metrics.acc+DESC" in page.url
    _navigate(page, page.locator("#runs-table thead a", has_text="acc"))
    assert _rows(page) == ["run-1", "run-0"]
    # hide a column: gone from the table, and kept in the URL
    page.locator("details.columns summary").click()
    page.locator(".col-toggle[data-col='params.C']").uncheck()
    assert not page.locator("#runs-table thead th[data-col='params.C']").is_visible()
    assert "hide=params.C" in page.url
    page.reload()
    assert not page.locator("#runs-table thead th[data-col='params.C']").is_visible()
    # a malformed filter: the parser's message, inline
    page.fill("input[name=filter]", "metrics.acc >> 1")
    _navigate(page, page.get_by_role("button", name="Search"))
    assert "invalid search filter" in page.locator(".filter-error").inner_text()
    page.fill("input[name=filter]", "")
    _navigate(page, page.get_by_role("button", name="Search"))
    page.check("input[name=deleted]")
    _navigate(page, page.get_by_role("button", name="Search"))
    assert "deleted-run" in _rows(page)
    page.goto(f"/experiments/{ui_store.experiment_id}?filter=params.solver+%3D+%27lbfgs%27&order=metrics.acc+DESC")
    shot(page, "runs")


def test_compare_three_runs(page: Any, ui_store: UIStore) -> None:
    page.goto(f"/experiments/{ui_store.experiment_id}")
    for name in ("run-0", "run-1", "run-2"):
        page.locator("#runs-table tbody tr", has_text=name).locator("input[name=run]").check()
    _navigate(page, page.get_by_role("button", name="Compare 3 runs"))
    assert page.url.count("run=") == 3
    differs = page.locator("#compare-table tr.differs th").all_inner_texts()
    assert "C" in differs and "solver" in differs and "acc" in differs
    # one chart per metric, one line per run
    page.wait_for_selector("figure.chart[data-key=loss] svg path")
    assert page.locator("figure.chart[data-key=loss] svg path").count() == 3
    page.locator("figure.chart[data-key=loss] svg").hover()  # each run's value where the pointer is
    readout = page.locator("figure.chart[data-key=loss] .readout").inner_text()
    assert readout.startswith("step ") and all(f"run-{i}: " in readout for i in range(3)), readout
    page.check("input[name=xaxis][value=time]")
    page.wait_for_selector("figure.chart[data-key=loss][data-loaded=time] svg path")
    assert (page.locator("figure.chart[data-key=loss] text.label").text_content() or "").startswith("seconds")
    # params against a metric
    assert page.locator("#scatter-plot svg circle").count() == 3
    # artifact diff of two runs with digests
    page.select_option("select[name=a]", ui_store.runs[0])
    page.select_option("select[name=b]", ui_store.runs[1])
    _navigate(page, page.get_by_role("button", name="Diff"))
    assert page.locator("#artifact-diff tr.same", has_text="model/weights.bin").count() == 1  # runs 0 and 1 share it
    assert page.locator("#artifact-diff tr.changed", has_text="config.json").count() == 1
    page.select_option("select[name=b]", ui_store.runs[2])
    _navigate(page, page.get_by_role("button", name="Diff"))
    changed = page.locator("#artifact-diff tr.changed", has_text="model/weights.bin")
    assert changed.count() == 1 and len(re.findall(r"\b[0-9a-f]{16}\b", changed.inner_text())) == 2  # both digests
    page.goto(page.url.split("&a=")[0])
    page.wait_for_selector("figure.chart[data-key=loss] svg path")
    shot(page, "compare")


def test_run_page_previews_csv_and_png(page: Any, ui_store: UIStore) -> None:
    page.goto(f"/experiments/{ui_store.experiment_id}")
    _navigate(page, page.get_by_role("link", name="run-0", exact=True))
    assert ui_store.runs[0] in page.url
    assert page.locator("text=yes").first.is_visible()  # sealed
    page.wait_for_selector("figure.chart[data-key=acc] svg path")
    shot(page, "run")
    _navigate(page, page.get_by_role("link", name="curve.csv"))
    cells = page.locator("table.csv-preview tbody td").all_inner_texts()
    assert cells[:2] == ["0", "1.0"]
    assert page.locator("table.csv-preview thead th").all_inner_texts() == ["step", "loss"]
    shot(page, "artifact-csv")
    page.go_back()
    _navigate(page, page.get_by_role("link", name="sample.png"))
    img = page.locator("img.image-preview")
    img.wait_for()
    page.wait_for_function("document.querySelector('img.image-preview').complete")
    assert img.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [24, 16]
    shot(page, "artifact-png")


def test_download_is_the_stored_file(page: Any, ui_store: UIStore, tmp_path: Path) -> None:
    page.goto(f"/runs/{ui_store.runs[0]}/artifacts/model/weights.bin")
    shown = page.locator("#artifact-digest").inner_text().strip()
    assert shown == ui_store.big_digest
    with page.expect_download() as info:
        page.locator("#download-link").click()
    target = tmp_path / "weights.bin"
    info.value.save_as(target)
    assert blake3(target.read_bytes()).hexdigest() == shown


def test_registered_model_and_its_source_run(page: Any, ui_store: UIStore) -> None:
    page.goto("/")
    assert page.locator("a", has_text=ui_store.model_name).count() == 1  # the registered models, under the experiments
    shot(page, "experiments")
    _navigate(page, page.get_by_role("link", name="Models", exact=True))
    _navigate(page, page.get_by_role("link", name=ui_store.model_name))
    assert page.locator("section#v2 .chip", has_text="@champion").count() == 1
    history = page.locator("#alias-history tbody tr").all_inner_texts()
    assert len(history) == 2 and "v1" in history[0] and "v2" in history[1]
    assert "scikit-learn" in page.locator("section#v2 ul.reqs").inner_text()
    shot(page, "model")
    _navigate(page, page.locator("section#v2 a.source-run"))
    assert page.locator("h1").inner_text().startswith("train-1")


def test_store_page_and_a_verify_started_from_it(page: Any) -> None:
    page.goto("/store")
    assert "x" in page.locator("#store-usage").inner_text()  # the dedup ratio
    shot(page, "store")
    page.locator("#verify-store").click()
    page.wait_for_selector("#verify-result", timeout=30_000)
    assert page.locator("#verify-result").inner_text().startswith("OK: verified")
    shot(page, "verify")


def test_audit_page(page: Any, ui_store: UIStore) -> None:
    page.goto(f"/runs/{ui_store.runs[0]}")
    _navigate(page, page.get_by_role("link", name="Audit report"))
    assert page.locator("#audit-verification").inner_text().startswith("PASSED")
    shot(page, "audit")


def test_hostile_content_stays_text(page: Any, ui_store: UIStore) -> None:
    """Run names, params, tags, file names and contents holding <script> are shown as text;
    an HTML or SVG artifact is shown sandboxed and cannot script the UI (a dialog or a
    changed title would fail the test)."""
    # the browser says it refused to run the artifacts' scripts: the sandbox at work
    EXPECTED.append(r"console error: Blocked script execution in '.*/raw/(report\.html|figure\.svg)' because the "
                    r"document's frame is sandboxed and the 'allow-scripts' permission is not set\.")
    page.goto(f"/experiments/{ui_store.hostile_experiment_id}")
    assert _rows(page) == ['<script>alert("x")</script>']
    page.goto(f"/runs/{ui_store.hostile_run}")
    title = page.title()
    assert page.locator("td", has_text='<script>alert("x")</script>').count() >= 2
    assert page.locator("a[href^='javascript']").count() == 0
    # the file '<script>alert("x")</script>.txt' is 'script>.txt' in the directory '<script>alert("x")<'
    for name in ("report.html", "figure.svg", "table.csv", "script>.txt"):
        page.goto(f"/runs/{ui_store.hostile_run}")
        _navigate(page, page.get_by_role("link", name=name, exact=True))
        assert page.title() != "pwned"
    page.goto(f"/runs/{ui_store.hostile_run}/artifacts/report.html")
    frame = page.frame_locator("iframe.sandboxed")
    assert frame.locator("p").inner_text() == "report"
    shot(page, "artifact-html")
    time.sleep(0.2)
    assert page.title() != "pwned" and not re.search("pwned", page.title())
    assert title


def test_what_fails_a_browser_test_is_seen(browser: Any, server: str) -> None:
    """The watch every test runs under sees a console error, a resource that failed to load,
    an uncaught script error and a dialog."""
    context = browser.new_context(base_url=server)
    try:
        pg = context.new_page()
        problems = watch(pg)
        pg.goto("/")
        pg.evaluate("console.error('logged')")
        pg.evaluate("() => { const i = document.createElement('img'); i.src = '/static/missing.png'; document.body.append(i); }")
        pg.evaluate("setTimeout(() => { throw new Error('thrown') }, 0)")
        pg.evaluate("setTimeout(() => alert('asked'), 0)")
        pg.wait_for_timeout(500)
    finally:
        context.close()
    assert "console error: logged" in problems
    assert any(p.startswith("console error: Failed to load resource") and "404" in p for p in problems), problems
    assert "page error: thrown" in problems or any("Error: thrown" in p for p in problems), problems
    assert "dialog: asked" in problems


def test_runs_table_pages(page: Any, ui_store: UIStore) -> None:
    page.goto(f"/experiments/{ui_store.experiment_id}?size=2")
    seen = _rows(page)
    assert len(seen) == 2 and "5 runs" in page.locator(".table-tools, body").first.inner_text()
    while page.locator("a[rel=next]").count():
        _navigate(page, page.locator("a[rel=next]"))
        assert "size=2" in page.url and 1 <= len(_rows(page)) <= 2
        seen += _rows(page)
    assert seen == ["train-1", "train-0", "run-2", "run-1", "run-0"]  # every run once, in order
    _navigate(page, page.get_by_role("link", name="first page"))
    assert _rows(page) == seen[:2]


def test_run_page_json_preview_and_a_directory_as_a_zip(page: Any, ui_store: UIStore, tmp_path: Path) -> None:
    page.goto(f"/runs/{ui_store.runs[0]}")
    _navigate(page, page.get_by_role("link", name="config.json"))
    assert '"solver": "lbfgs"' in page.locator("pre").first.inner_text()
    page.go_back()
    page.goto(f"/runs/{ui_store.runs[0]}/artifacts/data/curve.csv")
    digest = page.locator("#artifact-digest").inner_text().strip()
    page.goto(f"/runs/{ui_store.runs[0]}")
    with page.expect_download() as info:
        page.locator("li.dir", has_text="data").locator("a", has_text="zip").click()
    target = tmp_path / "data.zip"
    info.value.save_as(target)
    assert info.value.suggested_filename.endswith(".zip")
    with zipfile.ZipFile(target) as z:
        assert z.namelist() == ["curve.csv"]  # paths inside the directory
        assert blake3(z.read("curve.csv")).hexdigest() == digest


def test_verify_one_run_from_its_page(page: Any, ui_store: UIStore) -> None:
    page.goto(f"/runs/{ui_store.runs[1]}")
    _navigate(page, page.get_by_role("button", name="Verify this run"))
    page.wait_for_selector("#verify-result", timeout=30_000)
    assert page.locator("#verify-result").inner_text().startswith("OK: verified")
    assert ui_store.runs[1] in page.locator("h1").inner_text()
    page.goto("/store")
    assert "would delete now" in page.locator("#gc-dry-run").inner_text()  # what gc would reclaim, written nothing
    assert page.locator("a", has_text=f"run {ui_store.runs[1]}").count() == 1  # the verify it started, listed


def test_a_deleted_experiment_and_its_runs(page: Any, ui_store: UIStore) -> None:
    """An experiment deleted while the UI runs: hidden from the home page (a link shows it),
    its runs listed only with 'deleted runs too', each marked DELETED, as MLflow shows them;
    restored, it is back with its runs."""
    import casstore

    client = casstore.Client(str(ui_store.path))
    exp = client.create_experiment("retired-browser")
    run = client.create_run(exp, run_name="old-run")
    client.log_metric(run.info.run_id, "acc", 0.7)
    client.set_terminated(run.info.run_id)
    page.goto("/")
    _navigate(page, page.get_by_role("link", name="retired-browser", exact=True))
    assert _rows(page) == ["old-run"]
    client.delete_experiment(exp)
    try:
        page.goto("/")
        assert page.get_by_role("link", name="retired-browser", exact=True).count() == 0
        _navigate(page, page.locator("#deleted-experiments a", has_text="show them"))
        _navigate(page, page.get_by_role("link", name="retired-browser", exact=True))
        assert page.locator(".experiment-deleted").is_visible()
        assert _rows(page) == [] and "No runs" in page.locator("#runs-table tbody").inner_text()
        page.check("input[name=deleted]")
        _navigate(page, page.get_by_role("button", name="Search"))
        assert _rows(page) == ["old-run"]
        assert page.locator("#runs-table tbody tr.deleted .status-deleted").count() == 1
        _navigate(page, page.get_by_role("link", name="old-run", exact=True))
        assert page.locator("h1 .status-deleted").inner_text() == "DELETED"
    finally:
        client.restore_experiment(exp)
    page.goto(f"/experiments/{exp}")
    assert _rows(page) == ["old-run"] and page.locator(".experiment-deleted").count() == 0


def test_scores_logged_once_are_compared_as_bars(page: Any, ui_store: UIStore) -> None:
    """Runs that each logged a metric once (a final score) are compared as one bar a run with
    its value on it, as MLflow's charts compare them; their run page shows the value, no chart."""
    import casstore

    client = casstore.Client(str(ui_store.path))
    exp = client.create_experiment("scores-browser")
    ids = []
    for name, score in (("model-a", 0.91), ("model-b", 0.87)):
        run = client.create_run(exp, run_name=name)
        client.log_metric(run.info.run_id, "f1", score)
        client.set_terminated(run.info.run_id)
        ids.append(run.info.run_id)
    page.goto(f"/experiments/{exp}")
    for name in ("model-a", "model-b"):
        page.locator("#runs-table tbody tr", has_text=name).locator("input[name=run]").check()
    _navigate(page, page.get_by_role("button", name="Compare 2 runs"))
    page.wait_for_selector("figure.chart[data-key=f1] svg.bars rect")
    assert page.locator("figure.chart[data-key=f1] svg.bars rect").count() == 2
    assert sorted(page.locator("figure.chart[data-key=f1] svg text.value").all_text_contents()) == ["0.87", "0.91"]
    assert sorted(page.locator("figure.chart[data-key=f1] svg.bars rect title").all_text_contents()) == \
        ["model-a: 0.91", "model-b: 0.87"]
    page.goto(f"/runs/{ids[0]}")
    assert page.locator("figure.chart").count() == 0 and page.locator("#single-values").is_visible()
