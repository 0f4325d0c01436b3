"""The web UI in process (starlette's TestClient): every page, escaping, sandboxing,
downloads, path traversal, damage, bad input, paging, and that it never writes."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3
from ui_fixtures import HOSTILE, UIStore, make_ui_store

pytest.importorskip("starlette")  # the ui extra is part of the test extra: CI has it

from starlette.testclient import TestClient  # noqa: E402

from casstore.runs import open_run_store  # noqa: E402
from casstore.ui import create_app  # noqa: E402
from casstore.ui.app import ARTIFACT_CSP, STATIC, TEMPLATES  # noqa: E402
from casstore.ui.data import Series, UIData  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ui_store(tmp_path_factory: pytest.TempPathFactory) -> UIStore:
    return make_ui_store(tmp_path_factory.mktemp("ui"))


@pytest.fixture(scope="module")
def client(ui_store: UIStore) -> Iterator[TestClient]:
    with TestClient(create_app(open_run_store(str(ui_store.path)))) as c:
        yield c


def _pages(s: UIStore) -> list[str]:
    r0, r1, r2 = s.runs
    return [
        "/", f"/experiments/{s.experiment_id}", f"/experiments/{s.hostile_experiment_id}",
        f"/experiments/{s.experiment_id}?deleted=1&order=metrics.acc+DESC&filter=metrics.acc+%3E+0",
        f"/runs/{r0}", f"/runs/{s.hostile_run}", f"/runs/{r0}/artifacts/data/curve.csv",
        f"/runs/{r0}/artifacts/plots/sample.png", f"/runs/{r0}/artifacts/config.json", f"/runs/{r0}/artifacts/notes.txt",
        f"/runs/{r0}/artifacts/model/weights.bin", f"/runs/{s.hostile_run}/artifacts/table.csv",
        f"/runs/{s.hostile_run}/artifacts/report.html", f"/runs/{s.hostile_run}/artifacts/{HOSTILE}.txt",
        f"/compare?run={r0}&run={r1}&run={r2}", f"/compare?run={r0}&run={s.hostile_run}", "/models",
        f"/models/{s.model_name}", "/store", f"/runs/{r0}/audit", f"/runs/{s.hostile_run}/audit",
    ]


def test_every_page_renders(client: TestClient, ui_store: UIStore) -> None:
    for url in _pages(ui_store):
        r = client.get(url)
        assert r.status_code == 200, (url, r.text[:500])
        assert r.headers["content-type"].startswith("text/html")
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "script-src 'self'" in r.headers["content-security-policy"]


def test_store_strings_are_escaped_everywhere(client: TestClient, ui_store: UIStore) -> None:
    """Run and experiment names, params, tags, artifact names and contents hold <script>:
    every page shows them as text, and the only scripts are the UI's own file."""
    for url in _pages(ui_store):
        html = client.get(url).text
        assert "<script>alert" not in html, url
        assert re.findall(r"<script\b[^>]*>", html) in ([], ['<script src="/static/app.js?v=' + html.split("app.js?v=")[1].split('"')[0] + '" defer>'],
                                                        ['<script src="/static/app.js?v=' + html.split("app.js?v=")[1].split('"')[0] + '" defer>',
                                                         '<script type="application/json" id="scatter-data">']), url
    run = client.get(f"/runs/{ui_store.hostile_run}").text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in run
    assert 'href="javascript' not in run  # a tag value is a link only when it is http(s)
    assert '<a href="https://example.org/repo"' in client.get(f"/runs/{ui_store.runs[0]}").text
    compare = client.get(f"/compare?run={ui_store.runs[0]}&run={ui_store.hostile_run}").text
    data = compare.split('id="scatter-data">')[1].split("</script>")[0]
    assert "<" not in data and "\\u003cscript\\u003e" in data  # JSON in the page is escaped too
    txt = client.get(f"/runs/{ui_store.hostile_run}/artifacts/{HOSTILE}.txt").text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;\n</pre>" in txt


def test_html_and_svg_artifacts_are_sandboxed(client: TestClient, ui_store: UIStore) -> None:
    for name, media in (("report.html", "text/html"), ("figure.svg", "image/svg+xml")):
        r = client.get(f"/runs/{ui_store.hostile_run}/raw/{name}")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith(media)
        csp = r.headers["content-security-policy"]
        assert csp == ARTIFACT_CSP and csp.startswith("sandbox;") and "allow-scripts" not in csp
        assert "script-src" not in csp and "default-src 'none'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
    page = client.get(f"/runs/{ui_store.hostile_run}/artifacts/report.html").text
    assert re.search(r'<iframe class="sandboxed" sandbox=""', page)


def test_csv_json_and_image_previews(client: TestClient, ui_store: UIStore) -> None:
    r0 = ui_store.runs[0]
    csv_page = client.get(f"/runs/{r0}/artifacts/data/curve.csv").text
    assert "<th>step</th><th>loss</th>" in csv_page and "<td>0.25</td>" in csv_page
    assert '"solver": "lbfgs"' in client.get(f"/runs/{r0}/artifacts/config.json").text.replace("&#34;", '"')
    img = client.get(f"/runs/{r0}/raw/plots/sample.png")
    assert img.headers["content-type"] == "image/png" and img.content.startswith(b"\x89PNG")
    assert "no preview" in client.get(f"/runs/{r0}/artifacts/model/weights.bin").text.lower()


def test_a_logged_table_is_previewed_as_a_table(tmp_path: Path) -> None:
    """What ``log_table`` wrote (MLflow's evaluation tables) reads as rows and columns."""
    import casstore
    from casstore.tracking import fluent, uri

    fluent._reset()
    casstore.set_tracking_uri(str(tmp_path / "s"))
    try:
        with casstore.start_run() as run:
            casstore.log_table({"inputs": ["What is MLflow?"], "score": [0.5]}, "eval/results.json")
            casstore.log_dict({"columns": "not a table"}, "config.json")
    finally:
        fluent._reset()
        uri._reset_tracking_uri()
    with TestClient(create_app(open_run_store(str(tmp_path / "s")))) as c:
        page = c.get(f"/runs/{run.info.run_id}/artifacts/eval/results.json").text
        assert '<table class="grid csv-preview">' in page
        assert "<th>inputs</th><th>score</th>" in page and "<td>What is MLflow?</td><td>0.5</td>" in page
        assert "csv-preview" not in c.get(f"/runs/{run.info.run_id}/artifacts/config.json").text


def test_download_of_a_file_streams_the_verified_bytes(client: TestClient, ui_store: UIStore) -> None:
    r = client.get(f"/runs/{ui_store.runs[0]}/download/model/weights.bin")
    assert r.status_code == 200
    assert blake3(r.content).hexdigest() == ui_store.big_digest == r.headers["x-casstore-blake3"]
    assert r.headers["content-disposition"].startswith('attachment; filename="weights.bin"')
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["x-content-type-options"] == "nosniff"


def test_download_of_a_directory_and_a_run_is_a_zip(client: TestClient, ui_store: UIStore) -> None:
    store = open_run_store(str(ui_store.path))
    view = store.get_run(ui_store.runs[0])
    r = client.get(f"/runs/{ui_store.runs[0]}/download/model")
    assert r.headers["content-disposition"].startswith('attachment; filename="model.zip"')
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        assert z.namelist() == ["weights.bin"]
        assert blake3(z.read("weights.bin")).hexdigest() == ui_store.big_digest
    r = client.get(f"/runs/{ui_store.runs[0]}/download")
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        assert sorted(z.namelist()) == sorted(view.artifacts)
        for path, entry in view.artifacts.items():
            assert blake3(z.read(path)).hexdigest() == entry.digest


@pytest.mark.parametrize("url", [
    "/runs/{run}/artifacts/../../casstore.json",
    "/runs/{run}/artifacts/..%2f..%2fcasstore.json",
    "/runs/{run}/artifacts/%2e%2e/%2e%2e/casstore.json",
    "/runs/{run}/raw//etc/passwd",
    "/runs/{run}/raw/..%2F..%2F..%2Fetc%2Fpasswd",
    "/runs/{run}/download/../../../casstore.json",
    "/runs/{run}/download/..%2f..%2f..%2fcasstore.json",
    "/runs/..%2f..%2fcasstore.json",
    "/runs/{run}/artifacts/notes.txt%00.png",
    "/static/../casstore.json",
    "/static/..%2f..%2fpyproject.toml",
    "/static/%2e%2e/app.py",
    "/models/..%2f..%2fcasstore.json",
])
def test_no_url_reads_outside_the_store_or_the_run(client: TestClient, ui_store: UIStore, url: str) -> None:
    r = client.get(url.format(run=ui_store.runs[0]))
    assert r.status_code in (400, 404), (url, r.status_code)
    for secret in ('"format": "casstore"', "root:x:0:0", "[build-system]", "def create_app"):
        assert secret not in r.text


def test_unknown_things_are_404_pages_that_say_what(client: TestClient, ui_store: UIStore) -> None:
    cases = {
        "/runs/" + "0" * 32: "no run 00000000000000000000000000000000",
        "/runs/not-a-run": "no run 'not-a-run'",
        "/experiments/" + "f" * 32: "no experiment with id",
        "/experiments/bogus": "no experiment with id 'bogus'",
        "/models/no-such-model": "no registered model named 'no-such-model'",
        f"/runs/{ui_store.runs[0]}/artifacts/missing.txt": "has no artifact file 'missing.txt'",
        f"/runs/{ui_store.runs[0]}/download/nothing/here": "has no artifact directory 'nothing/here'",
        "/no/such/page": "there is no page at /no/such/page",
    }
    for url, message in cases.items():
        r = client.get(url)
        assert r.status_code == 404, url
        assert message in r.text.replace("&#39;", "'"), (url, r.text[:800])
    r = client.get("/api/metrics?run=" + "0" * 32 + "&key=acc")
    assert r.json()["series"][0]["missing"] is True


def test_a_malformed_filter_shows_the_parser_message_inline(client: TestClient, ui_store: UIStore) -> None:
    r = client.get(f"/experiments/{ui_store.experiment_id}", params={"filter": "metrics.acc >> 1"})
    assert r.status_code == 200
    assert 'class="error filter-error"' in r.text
    assert "invalid search filter &#39;metrics.acc &gt;&gt; 1&#39;" in r.text
    assert 'value="metrics.acc &gt;&gt; 1"' in r.text  # kept in the box to correct
    r = client.get(f"/experiments/{ui_store.experiment_id}", params={"order": "nonsense.x DESC"})
    assert "invalid order_by &#39;nonsense.x DESC&#39;: unknown entity" in r.text


def test_deleted_runs_are_hidden_unless_asked(client: TestClient, ui_store: UIStore) -> None:
    url = f"/experiments/{ui_store.experiment_id}"
    assert ui_store.deleted_run not in client.get(url).text
    shown = client.get(url, params={"deleted": "1"}).text
    assert ui_store.deleted_run in shown and "DELETED" in shown


def test_filter_and_sort_follow_mlflow_search(client: TestClient, ui_store: UIStore) -> None:
    r = client.get(f"/experiments/{ui_store.experiment_id}",
                   params={"filter": "params.solver = 'lbfgs' and metrics.acc > 0", "order": "metrics.acc ASC"})
    names = re.findall(r'<td data-col="run_name" class=""><a href="[^"]+">([^<]+)</a>', r.text)
    assert names == ["run-1", "run-0"]
    assert "2 runs match" in r.text


def test_the_runs_table_sorts_by_duration(tmp_path: Path) -> None:
    store = open_run_store(str(tmp_path / "s"))
    exp = store.get_or_create_experiment("timed")
    now = int(time.time() * 1000)
    for name, started in (("long", now - 60_000), ("short", now - 1_000), ("running", now - 30_000)):
        h = store.create_run(exp, run_name=name, start_time=started)
        if name != "running":
            h.end()
    with TestClient(create_app(store)) as c:
        page = c.get(f"/experiments/{exp}").text
        link = re.search(r'<a class="sort" href="([^"]+)" title="sort by attributes.duration">duration', page)
        assert link, "the duration header is a sort link"
        r = c.get(link.group(1).replace("&amp;", "&"))
        names = re.findall(r'<td data-col="run_name" class=""><a href="[^"]+">([^<]+)</a>', r.text)
        assert names == ["long", "short", "running"]  # longest first; a running run has no duration yet
        r = c.get(f"/experiments/{exp}", params={"order": "attributes.duration ASC"})
        assert re.findall(r'<td data-col="run_name" class=""><a href="[^"]+">([^<]+)</a>', r.text) == [
            "short", "long", "running"]


def test_keyset_paging_covers_every_run_once(tmp_path: Path) -> None:
    store = open_run_store(str(tmp_path / "s"))
    exp = store.get_or_create_experiment("many")
    made = []
    for i in range(23):
        h = store.create_run(exp, run_name=f"r{i}", start_time=1_000 + i)
        h.log_metric("m", float(i % 5), 0, 0)
        h.end()
        made.append(h.run_id)
    data = UIData(store)
    seen: list[str] = []
    token = None
    while True:
        page = data.search(exp, "", "metrics.m DESC", page_size=10, token=token)
        seen += [v.run_id for v in page.runs]
        token = page.next_token
        if token is None:
            break
    assert len(seen) == 23 and set(seen) == set(made)
    with TestClient(create_app(store)) as c:
        r = c.get(f"/experiments/{exp}", params={"size": "10"})
        nxt = re.search(r'rel="next" href="([^"]+)"', r.text)
        assert nxt and "Next 10 runs" in r.text
        page2 = c.get(nxt.group(1).replace("&amp;", "&")).text
        assert "first page" in page2
        bad = c.get(f"/experiments/{exp}", params={"page": "garbage!"})
        assert "is not one this server gave" in bad.text


def test_metric_charts_are_downsampled_keeping_the_shape(tmp_path: Path) -> None:
    store = open_run_store(str(tmp_path / "s"))
    exp = store.get_or_create_experiment("long")
    h = store.create_run(exp, run_name="long")
    n = 100_000
    for i in range(n):
        h.log_metric("loss", 1.0 if i == 77_777 else (-1.0 if i == 12_345 else (i % 100) / 1000), i, 1_000 + i)
    h.end()
    with TestClient(create_app(store)) as c:
        d = c.get("/api/metrics", params={"run": h.run_id, "key": "loss"}).json()["series"][0]
        assert d["points"] == n and d["sampled"] and len(d["xs"]) <= 2 * 600 + 2
        assert max(d["ys"]) == 1.0 and min(d["ys"]) == -1.0  # the spike and the dip survive
        assert d["xs"] == sorted(d["xs"])
        t = c.get("/api/metrics", params={"run": h.run_id, "key": "loss", "x": "time"}).json()["series"][0]
        assert t["xs"][0] == 0.0 and t["xs"][-1] == pytest.approx((n - 1) / 1000)
        full = c.get("/api/metric-history", params={"run": h.run_id, "key": "loss"})
        lines = full.text.splitlines()
        assert lines[0] == "step,timestamp,value" and len(lines) == n + 1
        assert full.headers["content-disposition"].startswith("attachment")


def test_series_of_few_points_is_not_sampled() -> None:
    from array import array

    s = Series("r", "k", array("q", [0, 1, 2]), array("q", [5, 6, 7]), array("d", [1.0, float("nan"), 3.0]))
    d = s.downsampled()
    assert d["ys"] == [1.0, None, 3.0] and not d["sampled"]


def test_a_long_series_with_gaps_and_infinities_is_downsampled() -> None:
    from array import array

    n = 10_000
    values = [float("nan") if i % 2 == 0 else (float("inf") if i == 5_001 else (i % 50) / 100) for i in range(n)]
    dips = [-1.0 - i / 100 for i in range(1, 10_000, 99)]  # one in most buckets, many start with a NaN
    for i in range(1, n, 99):
        values[i] = -1.0 - i / 100
    for x in ("step", "time"):
        d = Series("r", "k", array("q", range(n)), array("q", range(0, 10 * n, 10)), array("d", values)).downsampled(x)
        assert d["sampled"] and len(d["xs"]) <= 2 * 600 + 2 and d["xs"] == sorted(d["xs"])
        finite = [y for y in d["ys"] if y is not None]
        assert set(dips) <= set(finite) and max(finite) == 0.49  # every dip survives; infinity and NaN are gaps
        assert d["xs"][0] == 0 and d["xs"][-1] == (n - 1 if x == "step" else (n - 1) / 100)


def _corrupt_chunk_of(ui_store: UIStore, digest: str, which: int) -> bytes:
    store = open_run_store(str(ui_store.path))
    chunks = store.objects.recipe(digest).chunks
    key = store.objects.layout.chunk_key(chunks[which][0])
    path = ui_store.path / key
    original = path.read_bytes()
    path.write_bytes(b"\0" * 16 + original[16:])
    return original


def test_a_corrupt_chunk_gives_an_error_page_and_the_server_goes_on(ui_store: UIStore) -> None:
    store = open_run_store(str(ui_store.path))
    digest = ui_store.big_digest
    chunks = store.objects.recipe(digest).chunks
    assert len(chunks) >= 2
    first = store.objects.layout.chunk_key(chunks[0][0])
    original = _corrupt_chunk_of(ui_store, digest, 0)
    try:
        with TestClient(create_app(store), raise_server_exceptions=False) as c:
            r = c.get(f"/runs/{ui_store.runs[0]}/download/model/weights.bin")
            assert r.status_code == 500
            assert "The store is damaged" in r.text and chunks[0][0][:16] in r.text
            assert "casstore verify" in r.text
            z = c.get(f"/runs/{ui_store.runs[0]}/download/model")
            assert z.status_code == 500 and "The store is damaged" in z.text
            assert c.get("/").status_code == 200
            assert c.get(f"/runs/{ui_store.runs[0]}").status_code == 200
    finally:
        (ui_store.path / first).write_bytes(original)


def test_damage_found_mid_stream_cuts_the_download_short(ui_store: UIStore, tmp_path: Path) -> None:
    """A real server: the first chunk is good and sent, the last is corrupt: the response
    ends early (the client sees a failed download), and no byte of the bad chunk is sent."""
    import urllib.request

    store = open_run_store(str(ui_store.path))
    chunks = store.objects.recipe(ui_store.big_digest).chunks
    last = store.objects.layout.chunk_key(chunks[-1][0])
    original = _corrupt_chunk_of(ui_store, ui_store.big_digest, -1)
    try:
        with _server(ui_store.path, tmp_path) as base:
            good = b"".join(store.objects.read_chunk(d, n) for d, n in chunks[:-1])
            got = b""
            with urllib.request.urlopen(f"{base}/runs/{ui_store.runs[0]}/download/model/weights.bin") as resp:
                declared = int(resp.headers["content-length"])
                while True:
                    part = resp.read(1 << 16)
                    if not part:  # the server closed the connection
                        break
                    got += part
            assert declared == sum(n for _, n in chunks) and len(got) < declared  # a failed download
            assert good.startswith(got) and len(got) < sum(n for _, n in chunks)
            with urllib.request.urlopen(base + "/") as resp:
                assert resp.status == 200
    finally:
        (ui_store.path / last).write_bytes(original)


class _server:
    """`casstore ui` in its own process on a free port."""

    def __init__(self, store: Path, tmp: Path, *extra: str) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.args = [sys.executable, "-m", "casstore.cli", "ui", "--store", str(store), "--port", str(self.port), *extra]
        self.log = tmp / f"server-{self.port}.log"

    def __enter__(self) -> str:
        import time
        import urllib.request

        self.out = open(self.log, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(self.args, stdout=self.out, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(base + "/", timeout=2):
                    return base
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(self.log.read_text()) from None
                time.sleep(0.1)

    def __exit__(self, *exc: Any) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.out.close()


def test_the_ui_never_writes_to_the_store(ui_store: UIStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_run_store(str(ui_store.path))
    backend = store.backend
    writes: list[str] = []
    for name in ("_put_if_absent", "_put_blob", "_delete", "touch", "delete_if_stale", "clean_tmp"):
        monkeypatch.setattr(backend, name, lambda *a, _n=name, **k: writes.append(f"{_n}{a[:1]}"))
    with TestClient(create_app(store)) as c:
        for url in _pages(ui_store):
            assert c.get(url).status_code == 200, url
        r = c.post("/store/verify", data={"run": ""}, follow_redirects=True)
        assert r.status_code == 200
        job = r.url.path.rsplit("/", 1)[-1]
        _wait_for(c, job)
        c.get(f"/runs/{ui_store.runs[0]}/download")
    assert writes == []


def _wait_for(c: TestClient, job: str) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        d: dict[str, Any] = c.get(f"/api/jobs/{job}").json()
        if d["finished"]:
            return d
        time.sleep(0.05)
    raise AssertionError("the verification did not finish")


def test_verify_from_the_page_reports_as_the_cli(client: TestClient, ui_store: UIStore) -> None:
    r = client.post("/store/verify", data={"run": ui_store.runs[0]}, follow_redirects=False)
    assert r.status_code == 303
    job = r.headers["location"].rsplit("/", 1)[-1]
    d = _wait_for(client, job)
    assert d["result"]["ok"] and d["result"]["scope"] == "runs"
    page = client.get(r.headers["location"]).text
    from click.testing import CliRunner

    from casstore.cli import cli

    cli_line = CliRunner().invoke(cli, ["verify", ui_store.runs[0], "--store", str(ui_store.path)]).output.splitlines()[-1]
    shown = re.search(r'id="verify-result"[^>]*>([^<]*)<', page)
    assert shown and cli_line.startswith("OK: verified")
    assert re.sub(r" in [0-9.]+s$", "", shown.group(1)) == re.sub(r" in [0-9.]+s$", "", cli_line)  # the CLI's words
    # a post from another site starts nothing
    assert client.post("/store/verify", data={"run": ""}, headers={"origin": "https://evil.example"}).status_code == 403
    assert "no run" in client.post("/store/verify", data={"run": "0" * 32}).text


def test_verify_names_the_damage(ui_store: UIStore) -> None:
    store = open_run_store(str(ui_store.path))
    first = store.objects.layout.chunk_key(store.objects.recipe(ui_store.big_digest).chunks[0][0])
    original = _corrupt_chunk_of(ui_store, ui_store.big_digest, 0)
    try:
        with TestClient(create_app(store)) as c:
            r = c.post("/store/verify", data={"run": ui_store.runs[0]})
            job = str(r.url).rsplit("/", 1)[-1]
            d = _wait_for(c, job)
            assert not d["result"]["ok"]
            page = c.get(f"/store/verify/{job}").text
            assert "FAILED" in page and first in page and "model/weights.bin" in page
    finally:
        (ui_store.path / first).write_bytes(original)


def test_store_page_shows_usage_and_the_gc_dry_run(client: TestClient) -> None:
    page = client.get("/store").text
    assert "dedup ratio" in page and "Most shared files" in page and "would delete now" in page
    assert "weights.bin" in page  # shared by two runs


def test_model_page(client: TestClient, ui_store: UIStore) -> None:
    page = client.get(f"/models/{ui_store.model_name}").text
    assert "@champion" in page and "pinned model digest" in page and "scikit-learn" in page
    assert page.count("source-run") == 2
    assert re.search(r"<strong>inputs</strong>", page)  # the signature
    assert "models:/fraud-model/2" in page


def test_links_work_behind_a_url_prefix(ui_store: UIStore) -> None:
    with TestClient(create_app(open_run_store(str(ui_store.path))), root_path="/ui") as c:
        page = c.get(f"/experiments/{ui_store.experiment_id}").text
        hrefs = re.findall(r'(?:href|src|action)="([^"#]+)"', page)
        own = [h for h in hrefs if not h.startswith("http")]
        assert own and all(h.startswith("/ui/") for h in own), own


def test_loopback_server_refuses_other_host_names(ui_store: UIStore) -> None:
    app = create_app(open_run_store(str(ui_store.path)), allowed_hosts=["127.0.0.1", "localhost"])
    with TestClient(app, base_url="http://127.0.0.1") as c:
        assert c.get("/").status_code == 200
        assert c.get("/", headers={"host": "attacker.example"}).status_code == 400


def test_static_assets_are_cached_by_content_hash(client: TestClient) -> None:
    page = client.get("/").text
    css = re.search(r'href="(/static/app\.css\?v=[0-9a-f]{12})"', page)
    assert css
    r = client.get(css.group(1))
    assert "immutable" in r.headers["cache-control"]
    assert "immutable" not in client.get("/static/app.css?v=old").headers.get("cache-control", "")


def test_nothing_is_loaded_from_elsewhere() -> None:
    """Every script, style and font ships in the package: no page or asset names another host."""
    for path in list(TEMPLATES.iterdir()) + list(STATIC.iterdir()):
        text = path.read_text(encoding="utf-8")
        urls = re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"')]*", text)
        assert all(u == "http://www.w3.org/2000/svg" for u in urls), (path.name, urls)


def test_the_wheel_ships_templates_and_static_files(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=300)
    wheel = next(tmp_path.glob("casstore-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = [f"casstore/ui/{d.name}/{p.name}" for d in (TEMPLATES, STATIC) for p in d.iterdir() if p.is_file()]
    assert len(shipped) > 10
    assert not [n for n in shipped if n not in names]


def test_memory_store(tmp_path: Path) -> None:
    store = open_run_store("memory://ui-test")
    exp = store.get_or_create_experiment("mem")
    h = store.create_run(exp, run_name="in-memory")
    h.log_bytes("a.txt", b"hello")
    h.end()
    with TestClient(create_app(store)) as c:
        assert "in-memory" in c.get(f"/experiments/{exp}").text
        assert c.get(f"/runs/{h.run_id}/download/a.txt").content == b"hello"


def test_s3_store(s3_url: str) -> None:
    store = open_run_store(s3_url)
    exp = store.get_or_create_experiment("remote")
    h = store.create_run(exp, run_name="on-s3")
    h.log_param("p", "1")
    h.log_bytes("big.bin", bytes(range(256)) * 2000)
    h.end()
    with TestClient(create_app(open_run_store(s3_url))) as c:
        assert "on-s3" in c.get(f"/experiments/{exp}").text
        r = c.get(f"/runs/{h.run_id}/download/big.bin")
        assert r.content == bytes(range(256)) * 2000


def test_cli_binds_loopback_and_warns_loudly_otherwise(ui_store: UIStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    import uvicorn

    from casstore.cli import cli
    from casstore.cli.ui import is_loopback

    from casstore.cli.ui import ui_cmd

    calls: list[dict[str, Any]] = []

    def run(server: uvicorn.Server, sockets: list[Any]) -> None:  # the socket the server would serve
        calls.append({"host": sockets[0].getsockname()[0], "port": sockets[0].getsockname()[1]})
        sockets[0].close()

    monkeypatch.setattr(uvicorn.Server, "run", run)
    assert {p.name: p.default for p in ui_cmd.params}["host"] == "127.0.0.1"
    assert {p.name: p.default for p in ui_cmd.params}["port"] == 5000
    r = CliRunner().invoke(cli, ["ui", "--store", str(ui_store.path), "--port", "0"])
    assert r.exit_code == 0, r.output
    assert calls[-1]["host"] == "127.0.0.1" and f"http://127.0.0.1:{calls[-1]['port']}/" in r.output
    assert "WARNING" not in r.output
    r = CliRunner().invoke(cli, ["ui", "--store", str(ui_store.path), "--host", "0.0.0.0", "--port", "0"])
    assert r.exit_code == 0 and calls[-1]["host"] == "0.0.0.0"
    assert "WARNING: serving on 0.0.0.0:" in r.output and "no login" in r.output
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.5") and not is_loopback("example.org")
    r = CliRunner().invoke(cli, ["ui", "--store", str(ui_store.path / "nope")])
    assert r.exit_code == 1 and "no casstore store" in r.output


def test_data_module_doctest() -> None:
    import doctest

    import casstore.ui.data

    assert doctest.testmod(casstore.ui.data).failed == 0


def test_the_table_shows_runs_as_they_are_sealed_and_deleted(tmp_path: Path) -> None:
    """The table is a query of the search index: a run sealed or deleted while the server
    runs shows at the next request, and the count and columns are the experiment's own."""
    store = open_run_store(str(tmp_path / "s"))
    exp, other = store.get_or_create_experiment("table"), store.get_or_create_experiment("other")
    h = store.create_run(other, run_name="elsewhere")
    h.log_param("only_elsewhere", "1")
    h.end()
    made = []
    for i in range(3):
        h = store.create_run(exp, run_name=f"r{i}", start_time=1_000 + i)
        h.log_param("p", str(i))
        h.log_metric("m", float(i), 0, 0)
        h.end()
        made.append(h.run_id)
    reader = open_run_store(str(tmp_path / "s"))  # another process's view: nothing shared in memory
    data = UIData(reader)
    page = data.search(exp, "metrics.m >= 1")
    assert [v.run_name for v in page.runs] == ["r2", "r1"] and page.total == 2
    assert page.param_keys == ["p"] and page.metric_keys == ["m"]
    late = store.create_run(exp, run_name="late", start_time=2_000)
    late.log_metric("m", 5.0, 0, 0)
    late.log_param("lr", "0.1")
    late.end()
    store.delete_run(made[2])
    page = data.search(exp, "metrics.m >= 1")
    assert [v.run_name for v in page.runs] == ["late", "r1"] and page.total == 2
    assert page.param_keys == ["lr", "p"]
    both = data.search(exp, "metrics.m >= 1", deleted=True)
    assert [(v.run_name, v.deleted) for v in both.runs] == [("late", False), ("r2", True), ("r1", False)]
    assert both.total == 3


def test_a_chart_of_a_run_with_a_damaged_seal_shows_the_points_that_verify(tmp_path: Path) -> None:
    from casstore.exceptions import DamagedRunWarning
    from casstore.runs import layout

    store = open_run_store(str(tmp_path / "s"))
    store.compacts = False  # the end stops after the seal (a writer killed there): the batches stay
    runs = []
    for compacted in (False, True):
        h = store.create_run(store.get_or_create_experiment("e"))
        for s in range(20):
            h.log_metric("loss", s / 10, s, 1000 + s)
        store.compacts = compacted
        h.end()
        seal = tmp_path / "s" / layout.seal_key(h.run_id)
        data = bytearray(seal.read_bytes())
        data[len(data) // 2] ^= 0x01
        seal.write_bytes(bytes(data))
        runs.append(h.run_id)
    with TestClient(create_app(store)) as c, pytest.warns(DamagedRunWarning):
        for _ in range(2):  # nothing cached under a seal that does not verify
            d = c.get("/api/metrics", params={"run": runs[0], "key": "loss"}).json()["series"][0]
            assert d["xs"] == list(range(20)) and d["ys"] == [s / 10 for s in range(20)]
        # a run that keeps its seal only: the damage is named, no value is served, the server goes on
        r = c.get("/api/metrics", params={"run": runs[1], "key": "loss"})
        assert r.status_code >= 400 and layout.seal_key(runs[1]) in r.text and "series" not in r.text
        assert c.get("/api/metrics", params={"run": runs[0], "key": "loss"}).status_code == 200


def test_artifact_and_audit_pages_lead_back_to_the_runs_experiment(client: TestClient, ui_store: UIStore) -> None:
    r0 = ui_store.runs[0]
    back = f'<a href="/experiments/{ui_store.experiment_id}">fraud</a> / <a href="/runs/{r0}">run-0</a>'
    for url in (f"/runs/{r0}", f"/runs/{r0}/artifacts/notes.txt", f"/runs/{r0}/audit"):
        crumbs = client.get(url).text.split('class="crumbs')[1].split("</p>")[0]
        assert back in crumbs or f'<a href="/experiments/{ui_store.experiment_id}">fraud</a> / run-0' in crumbs, (url, crumbs)


def test_a_run_page_follows_the_run_as_it_is_resumed_and_deleted(tmp_path: Path) -> None:
    store = open_run_store(str(tmp_path / "s"))
    h = store.create_run(store.get_or_create_experiment("e"), run_name="kept")
    h.log_param("first", "1")
    for s in range(3):
        h.log_metric("loss", 1.0 / (s + 1), s, 1000 + s)
    first = h.end()
    with TestClient(create_app(store)) as c:
        page = c.get(f"/runs/{h.run_id}").text
        assert first in page and "first" in page and "DELETED" not in page
        assert re.search(r"<th>loss</th><td[^>]*>0.333333</td><td[^>]*>3</td>", page)  # latest value, 3 points
        h2 = store.reopen_run(h.run_id)
        h2.log_param("second", "2")
        h2.log_metric("loss", 0.1, 3, 1003)
        second = h2.end()
        page = c.get(f"/runs/{h.run_id}").text
        assert second in page and first not in page and "second" in page
        assert re.search(r"<th>loss</th><td[^>]*>0.1</td><td[^>]*>4</td>", page)
        assert c.get("/api/metrics", params={"run": h.run_id, "key": "loss"}).json()["series"][0]["ys"][-1] == 0.1
        store.delete_run(h.run_id)
        assert "DELETED" in c.get(f"/runs/{h.run_id}").text


def test_the_home_page_on_s3_lists_each_experiment_with_one_request_once_warm(s3_env: Any, s3_proxy: Any) -> None:
    """The home page counts each experiment's runs as a search lists them: once a machine's
    cache has listed an experiment, a view costs one LIST per experiment (the entries named
    since), not 16 (every entry, again), whatever the number of runs; the Default experiment,
    empty, included."""
    url = s3_env.fresh_url("home")
    writer = open_run_store(url)
    exps = [writer.get_or_create_experiment(name) for name in ("a", "b")]
    for i in range(6):
        h = writer.create_run(exps[i % 2], run_name=f"r{i}")
        h.end()
    reader = open_run_store(url, {"endpoint_url": s3_proxy.endpoint_url})
    reader.index.clear()
    with TestClient(create_app(reader)) as c:
        assert c.get("/").status_code == 200
        s3_proxy.reset_counts()
        page = c.get("/")
    assert page.status_code == 200
    counts = {m.group(1): m.group(2) for m in re.finditer(r'href="/experiments/([0-9a-f]+)".*?<td[^>]*>(\d+)</td>', page.text, re.S)}
    assert sorted(counts.values()) == ["0", "3", "3"], counts
    lists = s3_proxy.count("GET", "")  # LISTs name their prefix in the query: the proxy counts them under no area
    # the experiments' names and records (3), the registry (1), then one per experiment (3)
    assert lists <= 4 + 3, dict(s3_proxy.requests)


def test_the_store_page_does_not_wait_minutes_for_a_scan_of_every_run(
    ui_store: UIStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Space accounting and the gc dry run each read every run: minutes on a large store on
    S3. The page waits a bounded time, then says they are being computed and refreshes; the
    scans go on in the background, once however many views ask, and the next view shows them."""
    import threading

    from casstore.maintenance import du as du_module
    from casstore.ui import data as data_module

    release = threading.Event()
    calls = []
    real = du_module.disk_usage

    def slow(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(du_module, "disk_usage", slow)
    monkeypatch.setattr(data_module, "STORE_WAIT", 0.2)
    with TestClient(create_app(open_run_store(str(ui_store.path)))) as c:
        t0 = time.monotonic()
        first = c.get("/store")
        again = c.get("/store")
        assert time.monotonic() - t0 < 10
        for page in (first, again):
            assert page.status_code == 200 and 'id="store-pending"' in page.text
            assert '<meta http-equiv="refresh"' in page.text and 'id="store-usage"' not in page.text
        assert len(calls) == 1  # one scan, however many views
        release.set()
        deadline = time.monotonic() + 30
        while 'id="store-usage"' not in (done := c.get("/store")).text and time.monotonic() < deadline:
            time.sleep(0.1)
    assert 'id="store-usage"' in done.text and 'id="gc-dry-run"' in done.text
    assert 'id="store-pending"' not in done.text and "refresh" not in done.text


def test_a_deleted_experiments_runs_count_as_deleted_until_it_is_restored(tmp_path: Path) -> None:
    """As in MLflow: deleting an experiment hides it from the home page and marks its runs
    deleted (hidden from its table unless asked for, DELETED on their pages and in compare);
    restoring it brings them back. A deletion by another process shows at the next page."""
    import casstore

    client = casstore.Client(str(tmp_path / "s"))
    exp = client.create_experiment("retired")
    kept = client.create_experiment("kept")
    ids = []
    for i in range(2):
        run = client.create_run(exp, run_name=f"old-{i}")
        client.log_param(run.info.run_id, "p", str(i))
        client.log_metric(run.info.run_id, "m", float(i))
        client.set_terminated(run.info.run_id)
        ids.append(run.info.run_id)
    other = client.create_run(kept, run_name="live")
    client.set_terminated(other.info.run_id)
    with TestClient(create_app(open_run_store(str(tmp_path / "s")))) as c:
        def table(deleted: bool = False) -> str:
            return c.get(f"/experiments/{exp}", params={"deleted": "1"} if deleted else {}).text

        assert "old-0" in table() and "2 runs" in table() and "DELETED" not in table()
        casstore.Client(str(tmp_path / "s")).delete_experiment(exp)  # as another process would
        home = c.get("/").text
        assert "retired" not in home and "kept" in home and "1 deleted experiment hidden" in home
        assert "retired" in c.get("/", params={"deleted": "1"}).text
        page = table()
        assert "old-0" not in page and "0 runs" in page and "This experiment is deleted" in page
        assert 'data-col="params.p"' not in page  # no columns for the runs hidden
        shown = table(deleted=True)
        assert "old-0" in shown and "old-1" in shown and shown.count("status-deleted\">DELETED") >= 3
        assert "DELETED" in c.get(f"/runs/{ids[0]}").text
        assert "DELETED" in c.get("/compare", params={"run": ids}).text
        assert "DELETED" not in c.get(f"/runs/{other.info.run_id}").text
        # the search a script makes agrees with the table
        assert len(casstore.Client(str(tmp_path / "s")).search_runs([exp])) == 0
        casstore.Client(str(tmp_path / "s")).restore_experiment(exp)
        assert "old-0" in table() and "DELETED" not in table() and "DELETED" not in c.get(f"/runs/{ids[0]}").text
        assert "retired" in c.get("/").text


def test_words_in_the_search_box_find_runs_by_name(client: TestClient, ui_store: UIStore) -> None:
    """As in MLflow's runs search box: text that is not a filter finds the runs whose name
    contains it (any case); a filter is still a filter, and a broken one still says why."""
    url = f"/experiments/{ui_store.experiment_id}"

    def names(text: str) -> list[str]:
        page = client.get(url, params={"filter": text}).text
        return re.findall(r'<td data-col="run_name" class=""><a href="[^"]+">([^<]+)</a>', page)

    assert names("run-1") == ["run-1"]
    assert names("RUN") == ["run-2", "run-1", "run-0"]
    assert names("train") == ["train-1", "train-0"]
    assert names("no such run") == []
    page = client.get(url, params={"filter": "train"}).text
    assert "Runs whose name contains “train”" in page and 'value="train"' in page
    assert names("params.solver = 'saga'") == ["run-2"]
    broken = client.get(url, params={"filter": "metrics.acc >> 1"}).text
    assert "invalid search filter" in broken and "Runs whose name contains" not in broken


def test_nested_runs_link_parent_and_children(tmp_path: Path) -> None:
    """A sweep's parent run lists its child runs (as MLflow nests them), each child names its
    parent, and the runs table gets a parent column only when a run has a parent."""
    import casstore

    uri = str(tmp_path / "s")
    client = casstore.Client(uri)
    exp, flat = client.create_experiment("sweep"), client.create_experiment("flat")
    old = casstore.get_tracking_uri()
    casstore.set_tracking_uri(uri)
    try:
        with casstore.start_run(experiment_id=exp, run_name="parent", description="A sweep over C <b>") as parent:
            casstore.log_metric("best_acc", 1.0)
            for c in (0.1, 1.0):
                with casstore.start_run(experiment_id=exp, run_name=f"C={c}", nested=True):
                    casstore.log_metric("acc", c)
        with casstore.start_run(experiment_id=flat, run_name="alone"):
            pass
    finally:
        casstore.set_tracking_uri(old)
    pid = parent.info.run_id
    with TestClient(create_app(open_run_store(uri))) as c:
        page = c.get(f"/runs/{pid}").text
        assert '<p class="description" id="run-description">A sweep over C &lt;b&gt;</p>' in page  # MLflow's run description
        children = page.split('id="child-runs"')[1].split("</table>")[0]
        assert re.findall(r">(C=[^<]+)</a>", children) == ["C=1.0", "C=0.1"]
        assert re.findall(r'<th class="num">([^<]+)</th>', children) == ["acc"]  # the children's metrics only
        link = re.search(r'href="(/experiments/[^"]+)">the child runs in the runs table', page).group(1)
        listed = c.get(link.replace("&amp;", "&")).text
        assert re.findall(r'<td data-col="run_name" class=""><a href="[^"]+">([^<]+)</a>', listed) == ["C=1.0", "C=0.1"]
        child = re.search(r'href="/runs/([0-9a-f]{32})">C=0.1', children).group(1)
        assert f'<a href="/runs/{pid}">parent</a>' in c.get(f"/runs/{child}").text.split('id="parent-run"')[1][:200]
        table = c.get(f"/experiments/{exp}").text
        assert 'data-col="parent"' in table and table.count(f'<a href="/runs/{pid}">parent</a>') == 3  # its row, and each child's
        assert 'data-col="parent"' not in c.get(f"/experiments/{flat}").text
        assert "Child runs" not in c.get(f"/runs/{child}").text


def test_a_logged_model_has_a_page_from_its_run(client: TestClient, ui_store: UIStore) -> None:
    """A run's logged model links to a page with its digest, URI, the registry versions that
    pin it (with their aliases), flavors, signature, requirements and files."""
    from casstore.registry import Registry

    store = open_run_store(str(ui_store.path))
    v2 = Registry(store.backend, store.objects.layout).get_version(ui_store.model_name, 2)
    run_page = client.get(f"/runs/{v2.run_id}").text
    link = re.search(r'<a class="logged-model" href="([^"]+)">model</a>', run_page).group(1)
    assert link == f"/runs/{v2.run_id}/models/model"
    r = client.get(link)
    assert r.status_code == 200
    assert v2.model_digest in r.text and f"runs:/{v2.run_id}/model" in r.text
    registered = r.text.split('id="registered-as"')[1].split("</dd>")[0]
    assert f"{ui_store.model_name} v2" in registered and "@champion" in registered and "v1" not in registered
    assert "sklearn" in r.text and "scikit-learn" in r.text  # flavors, requirements
    # the signature as a table of names and types, as MLflow's UI shows it
    inputs = r.text.split('class="kv sig sig-inputs"')[1].split("</table>")[0]
    assert "<td>tensor of float64</td>" in inputs and "shape [-1, 2]" in inputs
    # a registry version's source leads to the same page
    model_page = client.get(f"/models/{ui_store.model_name}").text.split('id="v2"')[1]
    assert f'<a class="logged-model" href="{link}">' in model_page
    missing = client.get(f"/runs/{v2.run_id}/models/nope")
    assert missing.status_code == 404 and "logged no model named &#39;nope&#39;" in missing.text


def test_schema_rows_name_every_column_tensor_and_param() -> None:
    from casstore.ui.app import schema_rows

    cols = '[{"type": "double", "name": "age", "required": true}, {"type": "string", "name": "city", "required": false}]'
    assert schema_rows(cols) == [("age", "double", ""), ("city", "string", "optional")]
    assert schema_rows('[{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]') == \
        [("-", "tensor of int64", "shape [-1]")]
    assert schema_rows('[{"name": "k", "type": "double", "default": 1.0, "shape": null}]') == [("k", "double", "default 1.0")]
    assert schema_rows("not json") is None and schema_rows('{"a": 1}') is None


def test_a_metric_logged_once_is_a_value_not_a_chart(client: TestClient, ui_store: UIStore) -> None:
    """A metric with a history gets a chart; one logged once (a final score) is its value in
    the metrics table, without an empty chart of one point."""
    many = client.get(f"/runs/{ui_store.runs[0]}").text
    assert 'data-key="loss"' in many and 'data-key="acc"' in many and 'id="single-values"' not in many
    once = client.get(f"/runs/{ui_store.hostile_run}").text  # acc logged once
    assert 'class="chart"' not in once and 'id="single-values"' in once and "0.5" in once
