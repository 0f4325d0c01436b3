"""Resuming a run after it ended: nothing bound is rebound, each end writes a seal that
chains to the one before, and every earlier run digest stays verifiable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import casstore
from casstore.exceptions import ImmutableArtifactError, RunStateError
from casstore.maintenance.verify import verify_store
from casstore.runs import layout

from tracking_helpers import run_python, tracking  # noqa: F401  (fixture)


def test_resuming_an_ended_run_chains_a_new_seal(tracking: str) -> None:
    client = casstore.MlflowClient()
    with casstore.start_run() as run:
        casstore.log_param("lr", 0.1)
        casstore.log_text("v1", "notes.txt")
        casstore.log_metric("loss", 1.0, step=0)
    rid = run.info.run_id
    first = casstore.get_run(rid).info.digest
    with casstore.start_run(run_id=rid) as again:
        assert again.info.status == "RUNNING" and again.info.digest is None
        casstore.log_metric("loss", 0.5, step=1)
        casstore.log_param("lr", 0.1)  # the same value: fine
        with pytest.raises(ImmutableArtifactError):
            casstore.log_param("lr", 0.2)  # a bound param is never rebound
        with pytest.raises(ImmutableArtifactError):
            casstore.log_text("v2", "notes.txt")
        casstore.set_tag("phase", "fine-tune")
    view = casstore.get_run(rid)
    assert view.info.status == "FINISHED" and view.info.digest not in (None, first)
    assert view.data.metrics == {"loss": 0.5} and view.data.tags["phase"] == "fine-tune"
    seals = client.get_run_seals(rid)
    assert [(s["generation"], s["digest"]) for s in seals] == [(0, first), (1, view.info.digest)]
    store = client.store
    second = store.read_manifest(rid, view.info.digest)
    assert second["previous"] == first and second["generation"] == 1
    assert "previous" not in store.read_manifest(rid, first)  # the first seal's bytes are as ever
    # the earlier digest still verifies, and verify re-hashes both manifests
    report = verify_store(store, [rid])
    assert report.ok and report.checked["manifests"] == 2
    # a third end
    with casstore.start_run(run_id=rid):
        casstore.log_metric("loss", 0.25, step=2)
    assert [s["generation"] for s in client.get_run_seals(rid)] == [0, 1, 2]
    assert store.backend.exists(layout.seal_key(rid)) and store.backend.exists(layout.seal_key(rid, 2))


def test_tampering_with_an_earlier_manifest_is_found(tracking: str) -> None:
    with casstore.start_run() as run:
        casstore.log_param("a", 1)
    rid = run.info.run_id
    first = casstore.get_run(rid).info.digest
    with casstore.start_run(run_id=rid):
        casstore.log_param("b", 2)
    store = casstore.MlflowClient().store
    # the first seal, which holds the first manifest (a sealed run keeps nothing else)
    path = Path(store.backend.root) / layout.seal_key(rid)  # type: ignore[attr-defined]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    report = verify_store(store, [rid])
    assert not report.ok and any(layout.seal_key(rid) in p.object for p in report.problems)


def test_a_deleted_run_is_not_resumed(tracking: str) -> None:
    with casstore.start_run() as run:
        pass
    casstore.delete_run(run.info.run_id)
    with pytest.raises(RunStateError, match="deleted"):
        casstore.start_run(run_id=run.info.run_id)


@pytest.mark.parametrize("var", ["CASSTORE_RUN_ID", "MLFLOW_RUN_ID"])
def test_run_id_environment_variables_resume_a_run(tracking: str, tmp_path: Path, var: str) -> None:
    with casstore.start_run() as run:
        casstore.log_param("stage", "one")
    code = ("import casstore, os\n"
            "with casstore.start_run() as r:\n"
            "    casstore.log_metric('stage_two', 2.0)\n"
            f"print(r.info.run_id, {var!r} in os.environ)")
    out = run_python(code, cwd=tmp_path, env={"CASSTORE_TRACKING_URI": tracking, var: run.info.run_id})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [run.info.run_id, "False"]
    got = casstore.get_run(run.info.run_id)
    assert got.data.params == {"stage": "one"} and got.data.metrics == {"stage_two": 2.0}


def test_audit_shows_the_seal_chain(tracking: str) -> None:
    from casstore.cli.audit import build_audit

    with casstore.start_run() as run:
        pass
    with casstore.start_run(run_id=run.info.run_id):
        pass
    audit = build_audit(casstore.MlflowClient().store, run.info.run_id)
    assert [s["generation"] for s in audit["seals"]] == [0, 1]
    assert audit["seals"][1]["digest"] == audit["run"]["digest"]
    json.dumps(audit)
