"""`casstore models serve` as a real process on a loopback port, talked to over HTTP:
MLflow's scoring protocol, the Open Inference Protocol, the pinned digest in every
response, alias following, limits, and stopping with a request in flight."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from serving_helpers import MARK_ENV, MarkingModel, ScalingModel, Server, SleepyModel, post, request
from sklearn.datasets import load_iris
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

import casstore
import casstore.sklearn
from casstore.tracking import fluent, uri

X, Y = load_iris(return_X_y=True)
COLS = ["sl", "sw", "pl", "pw"]
DF = pd.DataFrame(X, columns=COLS)
ROWS = X[[0, 60, 120]]
TEXTS = ["a cheap offer, buy now", "the meeting moved to noon", "win a free prize now"]


@dataclass
class Models:
    root: Path
    store: str
    v1: Any  # ModelInfo of iris version 1 (a DataFrame model)
    v2: Any
    model_v1: Any
    model_v2: Any
    np_model: Any
    text_model: Any
    local_dir: Path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Models]:
    """A store with registered models: iris (columns, versions 1 and 2, champion -> 1),
    irisnp (one tensor), text (str tensor), sleepy (sleeps as asked), scaled (a custom model
    with an inference param); and iris v1 downloaded
    as a local MLflow model directory."""
    root = tmp_path_factory.mktemp("serving")
    store = str(root / "store")
    fluent._reset()
    casstore.set_tracking_uri(store)
    try:
        m1 = LogisticRegression(max_iter=300).fit(DF, Y)
        m2 = LogisticRegression(max_iter=300, C=0.01).fit(DF, Y)
        np_model = LogisticRegression(max_iter=300).fit(X, Y)
        labels = np.array(["spam", "ham", "spam"])
        text = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(TEXTS, labels)
        with casstore.start_run():
            v1 = casstore.sklearn.log_model(m1, "iris", input_example=DF.head(3), registered_model_name="iris")
            v2 = casstore.sklearn.log_model(m2, "iris2", input_example=DF.head(3), registered_model_name="iris")
            casstore.sklearn.log_model(np_model, "irisnp", input_example=X[:3], registered_model_name="irisnp")
            casstore.sklearn.log_model(text, "text", input_example=np.array(TEXTS[:2]), registered_model_name="text")
            casstore.sklearn.log_model(SleepyModel(), "sleepy", registered_model_name="sleepy", serialization_format="pickle")
            scaled = pd.DataFrame({"x": [1.0, 2.0]})
            signature = casstore.models.infer_signature(scaled, [1.0, 2.0], params={"k": 1.0})
            casstore.pyfunc.log_model(name="scaled", python_model=ScalingModel(), signature=signature,
                                      registered_model_name="scaled", pip_requirements=["pandas"])
        casstore.Client().set_registered_model_alias("iris", "champion", 1)
        local_dir = root / "local-iris"
        casstore.sklearn.load_model(v1.model_uri, dst_path=local_dir)
        yield Models(root, store, v1, v2, m1, m2, np_model, text, local_dir)
    finally:
        while casstore.active_run() is not None:
            casstore.end_run()
        fluent._reset()
        uri._reset_tracking_uri()


@pytest.fixture(scope="module")
def iris(models: Models) -> Iterator[Server]:
    """One server of models:/iris/1 shared by the protocol tests."""
    with Server("models:/iris/1", models.store, "--log-level", "warning", log=models.root / "iris.log") as server:
        yield server


def _split(rows: np.ndarray) -> dict[str, Any]:
    return {"dataframe_split": {"columns": COLS, "data": rows.tolist()}}


PAYLOADS: dict[str, Any] = {
    "dataframe_split": _split(ROWS),
    "dataframe_split with index": {"dataframe_split": {"index": [7, 8, 9], "columns": COLS, "data": ROWS.tolist()}},
    "dataframe_records": {"dataframe_records": [dict(zip(COLS, r)) for r in ROWS.tolist()]},
    "records in another column order": {"dataframe_records": [dict(reversed(list(zip(COLS, r)))) for r in ROWS.tolist()]},
    "instances as records": {"instances": [dict(zip(COLS, r)) for r in ROWS.tolist()]},
    "inputs as columns": {"inputs": {c: ROWS[:, i].tolist() for i, c in enumerate(COLS)}},
    "inputs as records": {"inputs": [dict(zip(COLS, r)) for r in ROWS.tolist()]},
    "with params": {**_split(ROWS), "params": {"temperature": 0.5}},
}


@pytest.mark.parametrize("form", list(PAYLOADS))
def test_every_json_form_mlflow_accepts_is_answered_with_the_models_predictions(iris: Server, models: Models,
                                                                               form: str) -> None:
    r = post(iris.port, PAYLOADS[form])
    assert r.status == 200, r.body
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"predictions": models.model_v1.predict(pd.DataFrame(ROWS, columns=COLS)).tolist()}


def test_params_reach_a_model_whose_signature_declares_them(models: Models) -> None:
    """MLflow's ``params``: given to a custom model that declares them (its default when left
    out), checked against their type; a model that declares none ignores them (above)."""
    with Server("models:/scaled/1", models.store, "--log-level", "warning", log=models.root / "scaled.log") as server:
        rows = {"dataframe_split": {"columns": ["x"], "data": [[1.0], [2.0]]}}
        assert post(server.port, {**rows, "params": {"k": 3}}).json() == {"predictions": [3.0, 6.0]}
        assert post(server.port, rows).json() == {"predictions": [1.0, 2.0]}
        bad = post(server.port, {**rows, "params": {"k": "three"}})
        assert bad.status == 400 and bad.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert "'k'" in bad.json()["message"]


def test_csv_with_a_header_row_is_answered_like_json(iris: Server, models: Models) -> None:
    csv = pd.DataFrame(ROWS, columns=COLS).to_csv(index=False)
    for ctype in ("text/csv", "text/csv; charset=utf-8"):
        r = post(iris.port, csv, ctype)
        assert r.status == 200, r.body
        assert r.json()["predictions"] == models.model_v1.predict(pd.DataFrame(ROWS, columns=COLS)).tolist()


def test_whole_numbers_are_taken_for_double_columns(iris: Server) -> None:
    assert post(iris.port, _split(np.array([[5, 3, 1, 0]]))).status == 200


@pytest.mark.parametrize("payload, says", [
    ({"dataframe_split": {"columns": ["sl", "sw", "pl"], "data": [[5.1, 3.5, 1.4]]}}, r"missing columns \['pw'\]"),
    ({"dataframe_split": {"columns": ["sl", "sw", "pl", "petal"], "data": [[5.1, 3.5, 1.4, 0.2]]}}, r"missing columns \['pw'\]"),
    ({"dataframe_split": {"columns": COLS, "data": [["SECRET-7", 3.5, 1.4, 0.2]]}}, r"column 'sl' must hold numbers \(its type is double\), got strings"),
    ({"dataframe_records": [{"sl": True, "sw": 3.5, "pl": 1.4, "pw": "0.2"}]}, r"column 'pw' must hold numbers"),
    ({"inputs": [[5.1, 3.5, 1.4, 0.2]]}, r"rows without names are not matched to columns by position"),
    ("sl,sw,pl\n5.1,3.5,1.4\n", r"missing columns \['pw'\]"),
    ("sl,sw,pl,pw\nSECRET-7,3.5,1.4,0.2\n", r"column 'sl' must hold numbers"),
], ids=["missing column", "wrong column", "wrong type", "string for a number", "rows", "csv missing", "csv type"])
def test_a_signature_violation_is_400_saying_what(iris: Server, payload: Any, says: str) -> None:
    import re

    r = post(iris.port, payload, "text/csv" if isinstance(payload, str) else "application/json")
    assert r.status == 400, r.body
    body = r.json()
    assert body["error_code"] == "INVALID_PARAMETER_VALUE"
    assert re.search(says, body["message"]), body["message"]
    assert "SECRET" not in body["message"]


@pytest.mark.parametrize("body, says", [
    (b'{"dataframe_split": {"columns": ["SECRET-1"], "data": [[1]]', "not valid JSON"),
    (b"\xff\xfeSECRET", "not UTF-8"),
    (b'["SECRET"]', "got a JSON array"),
    (b'{"SECRET-KEY": 1}', "it has 1 other key"),
    (b'{"inputs": [[1, 2, 3, 4]], "SECRET-A": 1, "SECRET-B": 2}', "it has 2 other keys"),
    (b'{"inputs": [[1, 2, 3, 4]], "instances": [[1, 2, 3, 4]]}', "it has 2 of them"),
    (b'{"dataframe_split": [[1, 2, 3, 4]]}', "dataframe_split must be a JSON object"),
    (b'{"dataframe_split": {"columns": ["sl"], "data": [[1, 2]]}}', "row 0 has 2 values, but there are 1 columns"),
    (b'{"dataframe_records": {"sl": 1}}', "must be an array of records"),
    (b'{"inputs": [[1, 2, 3, 4]], "params": ["SECRET"]}', "params must be a JSON object"),
    (b"", "not valid JSON"),
])
def test_a_malformed_body_is_400_that_never_echoes_it(iris: Server, body: bytes, says: str) -> None:
    r = post(iris.port, body)
    assert r.status == 400, r.body
    err = r.json()
    assert err["error_code"] == "BAD_REQUEST" and says in err["message"], err
    assert "SECRET" not in err["message"] and len(err["message"]) <= 1000


def test_a_model_failure_is_400_naming_only_the_exception_type(iris: Server) -> None:
    r = post(iris.port, {"dataframe_split": {"columns": COLS, "data": [[None, 3.5, 1.4, 0.2]]}})
    assert r.status == 400
    assert r.json() == {"error_code": "BAD_REQUEST", "message": (
        "the model failed on this input (ValueError); check that the input fits the model (the server's log has the details)")}


@pytest.mark.parametrize("ctype", [None, "application/xml", "application/json; charset=latin-1",
                                   "application/json; format=pandas-split", "text/plain"])
def test_an_unsupported_content_type_is_415(iris: Server, ctype: str | None) -> None:
    r = post(iris.port, PAYLOADS["dataframe_split"], ctype)
    assert r.status == 415, r.body
    assert "message" in r.json()


def test_every_response_carries_the_pinned_digest_and_version(iris: Server, models: Models) -> None:
    replies = [
        request(iris.port, "GET", "/ping"),
        request(iris.port, "GET", "/health"),
        request(iris.port, "GET", "/version"),
        post(iris.port, PAYLOADS["dataframe_split"]),
        post(iris.port, b"{oops"),
        post(iris.port, b"{}", "text/xml"),
        request(iris.port, "GET", "/no/such/path"),
        request(iris.port, "GET", "/v2/models/iris"),
    ]
    for r in replies:
        assert r.headers["x-casstore-model-digest"] == models.v1.model_digest
        assert r.headers["x-casstore-model-version"] == "iris/1"
    version = replies[2].json()
    assert version["model_digest"] == models.v1.model_digest and version["version"] == 1
    assert version["registered_model"] == "iris" and version["model_uri"] == "models:/iris/1"
    entry = casstore.tracking.uri.get_store(models.store).load_model_entry(models.v1.model_digest)
    assert version["files"] == {p: f["digest"] for p, f in entry["files"].items()}
    assert version["casstore_version"] == casstore.__version__


def test_a_body_over_the_limit_is_413(models: Models) -> None:
    import http.client

    with Server("models:/iris/1", models.store, "--max-body-mb", "0.01", "--log-level", "warning",
                log=models.root / "limit.log") as server:
        big = {"dataframe_split": {"columns": COLS, "data": [[5.1, 3.5, 1.4, 0.2]] * 1000}}  # ~20 kB
        r = post(server.port, big)
        assert r.status == 413 and r.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"
        assert "10485 bytes" in r.json()["message"]
        # a body sent in chunks, with no length declared, is cut off at the limit too
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("POST", "/invocations", body=iter([json.dumps(big).encode()[i:i + 4096] for i in range(0, 20_000, 4096)]),
                     headers={"Content-Type": "application/json"}, encode_chunked=True)
        assert conn.getresponse().status == 413
        conn.close()
        assert post(server.port, PAYLOADS["dataframe_split"]).status == 200  # a small one still goes through


# ---- every URI form ----------------------------------------------------------------------


def test_a_local_mlflow_model_directory_is_served_with_its_files_digests(models: Models) -> None:
    # MLflow's command line as its users write it: -h, -t, --no-conda and --install-mlflow work as they are
    with Server(str(models.local_dir), None, "-h", "127.0.0.1", "-t", "30", "--no-conda", "--install-mlflow",
                "--log-level", "warning", log=models.root / "local.log") as server:
        r = post(server.port, PAYLOADS["dataframe_records"])
        assert r.status == 200 and r.json()["predictions"] == models.model_v1.predict(pd.DataFrame(ROWS, columns=COLS)).tolist()
        assert r.headers["x-casstore-model-version"] == "none"
        version = request(server.port, "GET", "/version").json()
        assert version["model_digest"] == r.headers["x-casstore-model-digest"]
        entry = casstore.tracking.uri.get_store(models.store).load_model_entry(models.v1.model_digest)
        assert version["files"] == {p: f["digest"] for p, f in entry["files"].items()}


@pytest.mark.parametrize("which", ["models:/iris/1", "models:/iris@champion", "models:/iris/latest", "runs", "cas"])
def test_predict_scores_a_file_from_every_uri_form(models: Models, tmp_path: Path, which: str) -> None:
    from click.testing import CliRunner

    from casstore.cli import cli

    uri_of = {"runs": models.v1.model_uri, "cas": f"cas:{models.v1.model_digest}"}
    model_uri = uri_of.get(which, which)
    expected = models.model_v2 if which == "models:/iris/latest" else models.model_v1
    inp = tmp_path / "in.json"
    inp.write_text(json.dumps(PAYLOADS["dataframe_split"]))
    out = tmp_path / "out.json"
    res = CliRunner().invoke(cli, ["models", "predict", "-m", model_uri, "-i", str(inp), "-o", str(out), "--store", models.store])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text()) == {"predictions": expected.predict(pd.DataFrame(ROWS, columns=COLS)).tolist()}


def test_predict_reads_csv_and_stdin_and_refuses_bad_input_in_one_line(models: Models, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from casstore.cli import cli

    csv = tmp_path / "in.csv"
    csv.write_text(pd.DataFrame(ROWS, columns=COLS).to_csv(index=False))
    want = models.model_v1.predict(pd.DataFrame(ROWS, columns=COLS)).tolist()
    res = CliRunner().invoke(cli, ["models", "predict", "-m", str(models.local_dir), "-i", str(csv)])
    assert res.exit_code == 0 and json.loads(res.stdout) == {"predictions": want}, res.output
    res = CliRunner().invoke(cli, ["models", "predict", "-m", str(models.local_dir), "-i", "-", "-t", "json"],
                             input=json.dumps(PAYLOADS["inputs as columns"]))
    assert res.exit_code == 0 and json.loads(res.stdout) == {"predictions": want}, res.output
    bad = tmp_path / "bad.json"
    bad.write_text('{"dataframe_split": {"columns": ["sl"], "data": [[1]]}}')
    res = CliRunner().invoke(cli, ["models", "predict", "-m", str(models.local_dir), "-i", str(bad)])
    assert res.exit_code == 1
    assert res.stderr.startswith("casstore: error: model input does not match the model's signature: missing columns")
    assert res.stderr.count("\n") == 1
    res = CliRunner().invoke(cli, ["models", "predict", "-m", str(models.local_dir), "-i", str(tmp_path / "absent.json")])
    assert res.exit_code != 0 and "absent.json" in res.output


def test_mlflows_env_manager_option_takes_local_and_says_why_not_another(models: Models, tmp_path: Path) -> None:
    """``mlflow models predict/serve ... --env-manager local`` command lines work as they are."""
    from click.testing import CliRunner

    from casstore.cli import cli

    csv = tmp_path / "in.csv"
    csv.write_text(pd.DataFrame(ROWS, columns=COLS).to_csv(index=False))
    res = CliRunner().invoke(cli, ["models", "predict", "-m", str(models.local_dir), "-i", str(csv), "--env-manager", "local",
                                   "--install-mlflow"])
    assert res.exit_code == 0 and "predictions" in json.loads(res.stdout), res.output
    for command in (["predict", "-i", str(csv)], ["serve"]):
        res = CliRunner().invoke(cli, ["models", *command, "-m", str(models.local_dir), "--env-manager", "conda"])
        assert res.exit_code == 2 and "uses the current Python environment" in res.stderr, res.output


# ---- integrity ---------------------------------------------------------------------------


def test_a_tampered_model_chunk_is_refused_at_start_before_anything_is_unpickled(models: Models, tmp_path: Path) -> None:
    mark = tmp_path / "unpickled"
    store = str(tmp_path / "store")
    fluent._reset()
    casstore.set_tracking_uri(store)
    try:
        payload = np.random.default_rng(0).random(200_000)  # ~1.6 MB: several chunks
        with casstore.start_run():
            info = casstore.sklearn.log_model(MarkingModel(payload), "m", serialization_format="pickle",
                                              registered_model_name="marked")
        objects = casstore.tracking.uri.get_store(store).objects
        entry = casstore.tracking.uri.get_store(store).load_model_entry(info.model_digest)
        chunk = objects.chunk_digests(entry["files"]["model.pkl"]["digest"])[1]
        path = Path(store, *objects.layout.chunk_key(chunk).split("/"))
    finally:
        fluent._reset()
        uri._reset_tracking_uri()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))
    server = Server("models:/marked/1", store, log=tmp_path / "tampered.log", env={MARK_ENV: str(mark)})
    assert server.proc.wait(60) == 1
    server.stop()
    lines = server.output().strip().splitlines()
    assert lines[-1].startswith("casstore: error: ") and chunk in lines[-1], server.output()
    assert "Traceback" not in server.output() and "serving on" not in server.output()
    assert not mark.exists(), "the tampered model was unpickled"


# ---- following an alias -------------------------------------------------------------------


def test_following_an_alias_swaps_in_the_new_version_with_no_failed_request(models: Models) -> None:
    client = casstore.Client(tracking_uri=models.store)
    with Server("models:/iris@champion", models.store, "--follow-alias", "0.2", "--log-level", "warning",
                log=models.root / "follow.log") as server:
        seen: list[tuple[int, str, str, Any]] = []
        stop = threading.Event()

        def steady() -> None:
            while not stop.is_set():
                r = post(server.port, PAYLOADS["dataframe_split"])
                seen.append((r.status, r.headers.get("x-casstore-model-version", ""),
                             r.headers.get("x-casstore-model-digest", ""), r.body))

        t = threading.Thread(target=steady)
        t.start()
        try:
            time.sleep(0.5)
            client.set_registered_model_alias("iris", "champion", 2)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not (seen and seen[-1][1] == "iris/2"):
                time.sleep(0.05)
            time.sleep(0.3)
            assert request(server.port, "GET", "/version").json()["version"] == 2
        finally:
            stop.set()
            t.join()
            client.set_registered_model_alias("iris", "champion", 1)
        statuses = {s for s, *_ in seen}
        assert statuses == {200}, [s for s in seen if s[0] != 200][:3]
        versions = [v for _, v, _, _ in seen]
        first_v2 = versions.index("iris/2")
        assert set(versions[:first_v2]) == {"iris/1"} and set(versions[first_v2:]) == {"iris/2"}
        assert first_v2 > 0
        rows = pd.DataFrame(ROWS, columns=COLS)
        for _, version, digest, body in seen:
            model, info = (models.model_v1, models.v1) if version == "iris/1" else (models.model_v2, models.v2)
            assert digest == info.model_digest
            assert json.loads(body)["predictions"] == model.predict(rows).tolist()


def test_follow_alias_needs_an_alias_or_latest(models: Models, tmp_path: Path) -> None:
    server = Server("models:/iris/1", models.store, "--follow-alias", "1", log=tmp_path / "bad.log")
    assert server.proc.wait(60) == 1
    server.stop()
    assert "--follow-alias follows models:/<name>@<alias> or models:/<name>/latest" in server.output()


# ---- stopping, timeouts, workers ---------------------------------------------------------------


def test_sigterm_lets_the_request_in_flight_finish(models: Models) -> None:
    with Server("models:/sleepy/1", models.store, "--log-level", "warning", log=models.root / "term.log") as server:
        result: list[Any] = []
        t = threading.Thread(target=lambda: result.append(post(server.port, {"inputs": [[1.5]]})))
        t.start()
        time.sleep(0.5)
        server.proc.send_signal(signal.SIGTERM)
        t.join(30)
        assert result and result[0].status == 200 and result[0].json() == {"predictions": [3.0]}
        assert server.proc.wait(30) == 0
        with pytest.raises(OSError):
            request(server.port, "GET", "/ping", timeout=2)


def test_a_prediction_over_the_timeout_is_504(models: Models) -> None:
    with Server("models:/sleepy/1", models.store, "--timeout", "0.3", "--log-level", "warning",
                log=models.root / "timeout.log") as server:
        r = post(server.port, {"inputs": [[2]]})
        assert r.status == 504 and r.json()["error_code"] == "DEADLINE_EXCEEDED"
        assert post(server.port, {"inputs": [[0]]}).json() == {"predictions": [0.0]}


def _running(processes: list[Any]) -> list[Any]:
    """Those of ``processes`` still running (neither gone nor a zombie)."""
    import psutil

    out = []
    for p in processes:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def _wait_for_workers(server: Server, n: int, without: int | None = None, timeout: float = 60) -> list[Any]:
    """Wait until one look at the server's children finds ``n`` live workers, none of them the
    process ``without``. Both must hold in the same look: a worker killed a moment ago can
    still be running (a loaded machine delivers the signal when it next schedules it), and
    its replacement is forked only once the supervisor has reaped it."""
    import psutil

    deadline = time.monotonic() + timeout
    while True:
        now = _running(psutil.Process(server.proc.pid).children())
        if len(now) == n and without not in {p.pid for p in now}:
            return now
        if time.monotonic() > deadline:
            raise AssertionError(f"wanted {n} workers, none of them {without}; alive {[p.pid for p in now]}:\n"
                                 f"{server.output()[-4000:]}")
        time.sleep(0.1)


def test_workers_are_processes_that_share_the_port_and_stop_together(models: Models) -> None:
    with Server("models:/sleepy/1", models.store, "--workers", "2", "--log-level", "warning",
                log=models.root / "workers.log") as server:
        # the server answers once its first worker is up; the second may still be starting
        workers = _wait_for_workers(server, 2, timeout=20)
        # two requests that each sleep 2.5 s are answered side by side by the two processes:
        # one after the other would take at least 5 s. A second process that exists may still
        # be loading the model, so the pair is tried up to three times; a server that answers
        # one request at a time fails every try.
        took = []
        for _ in range(3):
            results: list[Any] = []
            threads = [threading.Thread(target=lambda: results.append(post(server.port, {"inputs": [[2.5]]})))
                       for _ in range(2)]
            started = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert [r.status for r in results] == [200, 200]
            took.append(time.monotonic() - started)
            if took[-1] < 4.5:
                break
        assert min(took) < 4.5, took
        # a worker that dies is replaced
        workers[0].kill()
        _wait_for_workers(server, 2, without=workers[0].pid)
        assert f"worker {workers[0].pid} was killed by SIGKILL; starting another" in server.output()
        assert post(server.port, {"inputs": [[0]]}).status == 200
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(30) == 0, server.output()
        assert not _running(workers)


#: put first on a server's PYTHONPATH, this ``sitecustomize`` makes the supervisor's forks
#: fail as a loaded system's do (EAGAIN), those numbered in ``CASSTORE_TEST_FAIL_FORKS``
_FAILING_FORKS = """\
import errno, os
_fork, _calls = os.fork, [0]
_fail = {int(n) for n in os.environ.get("CASSTORE_TEST_FAIL_FORKS", "").split(",") if n}
def _failing_fork():
    _calls[0] += 1
    if _calls[0] in _fail:
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
    return _fork()
os.fork = _failing_fork
"""


def test_a_refused_fork_is_tried_again_while_the_other_worker_serves(models: Models, tmp_path: Path) -> None:
    """The system refuses the fork of the second worker once, and of a dead worker's
    replacement twice: the supervisor logs it, serves with the worker it has, and tries
    again until all workers run; SIGTERM still stops them all."""
    from serving_helpers import REPO, TESTS

    (tmp_path / "sitecustomize.py").write_text(_FAILING_FORKS)
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO), str(TESTS)]), "CASSTORE_TEST_FAIL_FORKS": "2,4,5"}

    with Server("models:/sleepy/1", models.store, "--workers", "2", "--log-level", "warning",
                log=tmp_path / "forks.log", env=env) as server:
        workers = _wait_for_workers(server, 2)
        assert server.output().count("cannot start a worker process ([Errno 11] Resource temporarily unavailable)") == 1
        workers[0].kill()
        replaced = _wait_for_workers(server, 2, without=workers[0].pid)
        assert server.output().count("cannot start a worker process") == 3
        assert f"worker {workers[0].pid} was killed by SIGKILL; starting another" in server.output()
        assert post(server.port, {"inputs": [[0]]}).status == 200
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(30) == 0, server.output()
        assert not _running(workers + replaced)


# ---- the Open Inference Protocol -------------------------------------------------------------


def test_v2_health_and_model_metadata(iris: Server) -> None:
    assert request(iris.port, "GET", "/v2/health/ready").status == 200
    assert request(iris.port, "GET", "/v2/health/live").status == 200
    assert request(iris.port, "GET", "/v2").json()["name"] == "casstore"
    meta = request(iris.port, "GET", "/v2/models/iris").json()
    assert meta["name"] == "iris" and meta["versions"] == ["1"] and meta["platform"] == "casstore-sklearn"
    assert meta["inputs"] == [{"name": c, "datatype": "FP64", "shape": [-1]} for c in COLS]
    assert meta["outputs"] == [{"name": "predict", "datatype": "INT64", "shape": [-1]}]
    assert request(iris.port, "GET", "/v2/models/iris/ready").status == 200
    assert request(iris.port, "GET", "/v2/models/other").status == 404
    assert request(iris.port, "GET", "/v2/models/iris/versions/7").status == 404


def test_v2_infer_takes_one_input_per_column_or_one_table(iris: Server, models: Models) -> None:
    want = models.model_v1.predict(pd.DataFrame(ROWS, columns=COLS)).tolist()
    per_column = {"id": "req-1", "inputs": [
        {"name": c, "shape": [3], "datatype": "FP64", "data": ROWS[:, i].tolist()} for i, c in enumerate(COLS)]}
    r = post(iris.port, per_column, path="/v2/models/iris/infer")
    assert r.status == 200, r.body
    assert r.json() == {"model_name": "iris", "model_version": "1", "id": "req-1",
                        "outputs": [{"name": "predict", "shape": [3], "datatype": "INT64", "data": want}]}
    table = {"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP32", "data": ROWS.ravel().tolist()}]}
    assert post(iris.port, table, path="/v2/models/iris/versions/1/infer").json()["outputs"][0]["data"] == want


@pytest.mark.parametrize("payload, status, says", [
    ({"inputs": [{"name": "sl", "shape": [1], "datatype": "FP99", "data": [1]}]}, 400, "inputs.0.datatype"),
    ({"inputs": [{"name": "sl", "shape": [2], "datatype": "FP64", "data": [1]}]}, 400, "has 1 values, but its shape [2] holds 2"),
    ({"inputs": [{"name": "sl", "shape": [1], "datatype": "FP64", "data": ["SECRET"]}]}, 400, "values must be numbers"),
    ({"inputs": [{"name": c, "shape": [1], "datatype": "FP64", "data": [1.0]} for c in COLS[:3]]}, 400, "missing columns ['pw']"),
    ({"inputs": []}, 400, "inputs"),
    ({"inputs": [{"name": "sl", "shape": [1], "datatype": "INT8", "data": [1000]}]}, 400, "whole numbers from -128 to 127"),
])
def test_v2_errors_say_what(iris: Server, payload: Any, status: int, says: str) -> None:
    r = post(iris.port, payload, path="/v2/models/iris/infer")
    assert r.status == status, r.body
    assert says in r.json()["error"] and "SECRET" not in r.json()["error"]


def test_v2_bytes_tensors_reach_a_text_model_as_strings_and_come_back(models: Models) -> None:
    with Server("models:/text/1", models.store, "--log-level", "warning", log=models.root / "text.log") as server:
        meta = request(server.port, "GET", "/v2/models/text").json()
        assert meta["inputs"] == [{"name": "input", "datatype": "BYTES", "shape": [-1]}]
        texts = [TEXTS[0], "ünïcode ☃ prize now", ""]
        r = post(server.port, {"inputs": [{"name": "input", "shape": [3], "datatype": "BYTES", "data": texts}]},
                 path="/v2/models/text/infer")
        assert r.status == 200, r.body
        out = r.json()["outputs"][0]
        assert out["datatype"] == "BYTES" and out["shape"] == [3]
        assert out["data"] == models.text_model.predict(np.array(texts)).tolist()
        bad = post(server.port, {"inputs": [{"name": "input", "shape": [1], "datatype": "BYTES", "data": [3]}]},
                   path="/v2/models/text/infer")
        assert bad.status == 400 and "must be strings" in bad.json()["error"]
        # and through MLflow's protocol, the same texts
        assert post(server.port, {"inputs": texts}).json() == {"predictions": out["data"]}
