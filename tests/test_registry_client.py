"""casstore.register_model and the registry methods of casstore.Client (MLflow's names)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.tree import DecisionTreeClassifier
from tracking_helpers import REPO, tracking  # noqa: F401  (fixture)

import casstore
import casstore.sklearn
from casstore.exceptions import InvalidInputError, ObjectNotFoundError

X, Y = load_iris(return_X_y=True)


@pytest.fixture
def logged(tracking: str) -> casstore.models.ModelInfo:
    model = DecisionTreeClassifier(random_state=0).fit(X, Y)
    with casstore.start_run():
        return casstore.sklearn.log_model(model, "tree")


def test_register_model_pins_the_logged_digest(logged: casstore.models.ModelInfo) -> None:
    mv = casstore.register_model(logged.model_uri, "fraud", tags={"team": "risk"})
    assert (mv.name, mv.version, mv.model_digest, mv.run_id) == ("fraud", 1, logged.model_digest, logged.run_id)
    assert mv.source == logged.model_uri and mv.tags == {"team": "risk"}
    again = casstore.register_model(f"cas:{logged.model_digest}", "fraud")
    assert (again.version, again.model_digest, again.run_id) == (2, logged.model_digest, logged.run_id)
    from_version = casstore.register_model("models:/fraud/1", "fraud-copy")
    assert from_version.model_digest == logged.model_digest


def test_register_model_of_nothing_is_refused(logged: casstore.models.ModelInfo) -> None:
    with pytest.raises(ObjectNotFoundError, match="no model named 'nope'"):
        casstore.register_model(f"runs:/{logged.run_id}/nope", "fraud")
    with pytest.raises(ObjectNotFoundError, match="no model entry"):
        casstore.register_model("cas:" + "0" * 64, "fraud")
    with pytest.raises(InvalidInputError):
        casstore.register_model(logged.model_uri, "bad/name")
    with pytest.raises(ObjectNotFoundError):
        casstore.Client().get_registered_model("fraud")


def test_client_registered_model_methods(logged: casstore.models.ModelInfo) -> None:
    c = casstore.MlflowClient()
    assert casstore.MlflowClient is casstore.Client
    rm = c.create_registered_model("fraud", tags={"team": "risk"}, description="catches fraud")
    assert (rm.name, rm.tags, rm.description) == ("fraud", {"team": "risk"}, "catches fraud")
    mv = c.create_model_version("fraud", logged.model_uri, run_id=logged.run_id, description="first")
    assert (mv.version, mv.description, mv.model_digest) == (1, "first", logged.model_digest)
    c.update_registered_model("fraud", description="v2 text")
    c.set_registered_model_tag("fraud", "tier", 1)
    c.delete_registered_model_tag("fraud", "team")
    rm = c.get_registered_model("fraud")
    assert (rm.description, rm.tags, [v.version for v in rm.latest_versions]) == ("v2 text", {"tier": "1"}, [1])
    c.update_model_version("fraud", 1, description="validated")
    c.set_model_version_tag("fraud", "1", "ok", True)
    assert c.get_model_version("fraud", 1).tags == {"ok": "True"}
    c.delete_model_version_tag("fraud", 1, "ok")
    assert c.get_model_version("fraud", 1).description == "validated"
    assert c.get_model_version("fraud", 1).tags == {}
    assert c.get_latest_versions("fraud")[0].version == 1
    assert c.get_model_version_download_uri("fraud", 1) == logged.model_uri
    ops = [e.op for e in c.get_registered_model_history("fraud")]
    assert "set_description" in ops and "delete_tag" in ops and "delete_version_tag" in ops


def test_client_aliases_and_their_history(logged: casstore.models.ModelInfo) -> None:
    c = casstore.Client()
    for _ in range(3):
        c.create_model_version("fraud", logged.model_uri)
    c.set_registered_model_alias("fraud", "champion", 1)
    c.set_registered_model_alias("fraud", "champion", "2")
    assert c.get_model_version_by_alias("fraud", "champion").version == 2
    assert c.get_registered_model("fraud").aliases == {"champion": 2}
    loaded = casstore.pyfunc.load_model("models:/fraud@champion")
    assert loaded.model_digest == logged.model_digest
    c.delete_registered_model_alias("fraud", "champion")
    with pytest.raises(ObjectNotFoundError):
        c.get_model_version_by_alias("fraud", "champion")
    assert [e.version for e in c.get_registered_model_alias_history("fraud", "champion")] == [1, 2, None]


def test_client_deletions_are_recorded(logged: casstore.models.ModelInfo) -> None:
    c = casstore.Client()
    c.create_model_version("fraud", logged.model_uri)
    c.create_model_version("fraud", logged.model_uri)
    c.delete_model_version("fraud", 2)
    with pytest.raises(ObjectNotFoundError, match="deleted"):
        casstore.pyfunc.load_model("models:/fraud/2")
    assert casstore.pyfunc.load_model("models:/fraud/latest").metadata.model_uri == "models:/fraud/latest"
    c.delete_registered_model("fraud")
    with pytest.raises(ObjectNotFoundError, match="deleted"):
        c.get_registered_model("fraud")
    assert [e.op for e in c.get_registered_model_history("fraud")] == ["delete_version", "delete_model"]


def test_client_alias_history_records_an_alias_removed_by_a_deletion(logged: casstore.models.ModelInfo) -> None:
    c = casstore.Client()
    c.create_model_version("fraud", logged.model_uri)
    c.create_model_version("fraud", logged.model_uri)
    c.set_registered_model_alias("fraud", "champ", 2)
    c.delete_model_version("fraud", 2)
    assert c.get_registered_model("fraud").aliases == {}
    hist = c.get_registered_model_alias_history("fraud", "champ")
    assert [(e.version, e.reason) for e in hist] == [(2, None), (None, "version 2 was deleted")]
    created = c.get_registered_model("fraud").creation_timestamp
    c.delete_registered_model("fraud")
    time.sleep(0.01)
    assert c.create_registered_model("fraud").creation_timestamp > created


def test_search_registered_models_and_versions(logged: casstore.models.ModelInfo) -> None:
    c = casstore.Client()
    c.create_registered_model("fraud-eu", tags={"team": "risk"})
    c.create_registered_model("fraud-us", tags={"team": "risk"})
    c.create_registered_model("churn", tags={"team": "growth"})
    for name in ("fraud-eu", "fraud-eu", "churn"):
        c.create_model_version(name, logged.model_uri)
    assert [m.name for m in c.search_registered_models()] == ["churn", "fraud-eu", "fraud-us"]
    assert [m.name for m in c.search_registered_models("name LIKE 'fraud%'")] == ["fraud-eu", "fraud-us"]
    assert [m.name for m in c.search_registered_models("tags.team = 'growth'")] == ["churn"]
    assert [m.name for m in c.search_registered_models(order_by=["name DESC"], max_results=1)] == ["fraud-us"]
    vs = c.search_model_versions("name = 'fraud-eu'")
    assert [(v.name, v.version) for v in vs] == [("fraud-eu", 2), ("fraud-eu", 1)]
    vs = c.search_model_versions(f"run_id = '{logged.run_id}' AND version_number >= 2")
    assert [(v.name, v.version) for v in vs] == [("fraud-eu", 2)]
    assert len(c.search_model_versions(f"model_digest = '{logged.model_digest}'")) == 3
    with pytest.raises(InvalidInputError):
        c.search_model_versions("version_number = 'x'")
    with pytest.raises(InvalidInputError):
        c.search_registered_models("nonsense ~ 1")


_REGISTER = textwrap.dedent(
    """
    import os, sys, time
    import casstore
    uri, go = sys.argv[1], sys.argv[2]
    while not os.path.exists(go):
        time.sleep(0.005)
    print(" ".join(str(casstore.register_model(uri, "shared").version) for _ in range(3)))
    """
)


def test_concurrent_register_model_from_processes(logged: casstore.models.ModelInfo, tracking: str, tmp_path: Path) -> None:
    go = tmp_path / "go"
    env = {"PYTHONPATH": str(REPO), "CASSTORE_TRACKING_URI": tracking}
    procs = [
        subprocess.Popen([sys.executable, "-c", _REGISTER, logged.model_uri, str(go)], env={**os.environ, **env},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    time.sleep(1.0)
    go.touch()
    got: list[int] = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
        got += [int(v) for v in out.split()]
    assert sorted(got) == list(range(1, 13))
    versions = casstore.Client().search_model_versions("name = 'shared'")
    assert sorted(v.version for v in versions) == list(range(1, 13))
    assert {v.model_digest for v in versions} == {logged.model_digest}
    model = casstore.sklearn.load_model("models:/shared/12")
    assert np.array_equal(model.predict(X), Y)
