"""The registry over a backend: numbering, pins, aliases with history, tags, deletions."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from casstore.exceptions import CorruptRecordError, InvalidDigestError, InvalidInputError, ObjectNotFoundError
from casstore.objects import open_store
from casstore.objects.codec import unpack
from casstore.registry import Registry
from casstore.registry import layout as L

ROOT = Path(__file__).resolve().parents[1]
D1, D2, D3 = ("1" * 64), ("2" * 64), ("3" * 64)


@pytest.fixture(params=["local", "memory"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Registry:
    url = str(tmp_path / "store") if request.param == "local" else f"memory://registry-{os.getpid()}-{time.time_ns()}"
    return Registry(open_store(url).backend)


def test_versions_are_numbered_from_one_and_pin_their_digest(registry: Registry) -> None:
    v1 = registry.create_version("fraud", D1, source="runs:/" + "a" * 32 + "/m", run_id="a" * 32)
    v2 = registry.create_version("fraud", D2)
    assert (v1.version, v2.version) == (1, 2)
    assert registry.get_version("fraud", 1).model_digest == D1
    assert registry.get_version("fraud", "2").model_digest == D2
    assert registry.get_version("fraud", 1).run_id == "a" * 32
    assert registry.latest_version("fraud").version == 2
    assert [v.version for v in registry.list_versions("fraud")] == [1, 2]


def test_a_version_record_is_never_rewritten(registry: Registry) -> None:
    registry.create_version("fraud", D1)
    assert registry.backend.put_if_absent(L.version_key("fraud", 1), b"other") is False
    assert registry.get_version("fraud", 1).model_digest == D1


def test_create_model_twice_is_an_error_and_get_unknown_is_not_found(registry: Registry) -> None:
    registry.create_model("m", tags={"team": "risk"}, description="first")
    rm = registry.get_model("m")
    assert (rm.tags, rm.description, rm.latest_versions) == ({"team": "risk"}, "first", [])
    with pytest.raises(InvalidInputError, match="already exists"):
        registry.create_model("m")
    with pytest.raises(ObjectNotFoundError, match="no registered model named 'nope'"):
        registry.get_model("nope")
    with pytest.raises(ObjectNotFoundError, match="no version 9"):
        registry.get_version("m", 9)


def test_bad_names_aliases_versions_and_digests_are_refused(registry: Registry) -> None:
    for bad in ("", " x", "a/b", "a@b", "tab\tname"):
        with pytest.raises(InvalidInputError):
            registry.create_model(bad)
    registry.create_version("m", D1)
    for alias in ("latest", "v3", "has space", ""):
        with pytest.raises(InvalidInputError):
            registry.set_alias("m", alias, 1)
    for version in (0, -1, "x", True):
        with pytest.raises(InvalidInputError):
            registry.get_version("m", version)  # type: ignore[arg-type]
    with pytest.raises(InvalidDigestError):
        registry.create_version("m", "abc")


def test_aliases_move_and_keep_an_append_only_history(registry: Registry) -> None:
    for d in (D1, D2, D3):
        registry.create_version("m", d)
    registry.set_alias("m", "champion", 1)
    registry.set_alias("m", "champion", 3)
    registry.set_alias("m", "challenger", 2)
    assert registry.get_version_by_alias("m", "champion").version == 3
    assert registry.get_model("m").aliases == {"champion": 3, "challenger": 2}
    assert registry.get_version("m", 3).aliases == ["champion"]
    registry.delete_alias("m", "champion")
    with pytest.raises(ObjectNotFoundError, match="no alias 'champion'") as e:
        registry.get_version_by_alias("m", "champion")
    assert e.value.error_code == "INVALID_PARAMETER_VALUE"  # MLflow's code for a missing alias
    registry.delete_alias("m", "champion")  # not set: nothing happens, nothing is recorded (as MLflow)
    hist = registry.alias_history("m", "champion")
    assert [e.version for e in hist] == [1, 3, None]
    assert [e.seq for e in hist] == [1, 2, 3]
    assert {e.alias for e in registry.alias_history("m")} == {"champion", "challenger"}


def test_alias_to_a_missing_version_is_refused(registry: Registry) -> None:
    registry.create_version("m", D1)
    with pytest.raises(ObjectNotFoundError):
        registry.set_alias("m", "prod", 2)


def test_tags_and_descriptions_of_models_and_versions(registry: Registry) -> None:
    registry.create_version("m", D1, tags={"stage": "candidate"}, description="initial")
    registry.set_model_tag("m", "owner", "ana")
    registry.set_version_tag("m", 1, "validated", "yes")
    registry.set_version_description("m", 1, "validated on holdout")
    registry.set_model_description("m", "fraud model")
    mv = registry.get_version("m", 1)
    assert mv.tags == {"stage": "candidate", "validated": "yes"}
    assert mv.description == "validated on holdout"
    registry.delete_version_tag("m", 1, "stage")
    registry.delete_model_tag("m", "owner")
    assert registry.get_version("m", 1).tags == {"validated": "yes"}
    rm = registry.get_model("m")
    assert (rm.tags, rm.description) == ({}, "fraud model")
    registry.delete_model_tag("m", "owner")  # gone already: nothing happens, nothing is recorded (as MLflow)
    registry.delete_version_tag("m", 1, "stage")
    ops = [e.op for e in registry.history("m")]
    assert ops == ["set_tag", "set_version_tag", "set_version_description", "set_description",
                   "delete_version_tag", "delete_tag"]


def test_deleting_a_version_is_recorded_and_its_number_never_reused(registry: Registry) -> None:
    registry.create_version("m", D1)
    registry.create_version("m", D2)
    registry.set_alias("m", "prod", 2)
    registry.delete_version("m", 2, reason="leaked labels")
    with pytest.raises(ObjectNotFoundError, match="was deleted"):
        registry.get_version("m", 2)
    assert registry.get_version("m", 2, include_deleted=True).model_digest == D2
    assert registry.latest_version("m").version == 1
    assert registry.get_model("m").aliases == {}
    ev = registry.history("m")[-1]
    assert (ev.op, ev.fields["version"], ev.fields["reason"]) == ("delete_version", 2, "leaked labels")
    assert registry.create_version("m", D3).version == 3


def test_deleting_a_model_is_recorded_and_recreating_it_continues_numbering(registry: Registry) -> None:
    registry.create_version("m", D1, )
    registry.set_model_tag("m", "k", "v")
    registry.delete_model("m", reason="retired")
    with pytest.raises(ObjectNotFoundError, match="was deleted"):
        registry.get_model("m")
    assert [m.name for m in registry.list_models()] == []
    assert [m.name for m in registry.list_models(include_deleted=True)] == ["m"]
    v = registry.create_version("m", D2)
    assert v.version == 2
    assert registry.get_model("m").tags == {}
    with pytest.raises(ObjectNotFoundError):
        registry.get_version("m", 1)
    assert [e.op for e in registry.history("m")][-2:] == ["delete_model", "create_model"]


def test_deleting_an_aliased_version_records_the_alias_removal_with_its_reason(registry: Registry) -> None:
    registry.create_version("m", D1)
    registry.create_version("m", D2)
    registry.set_alias("m", "champ", 2)
    registry.set_alias("m", "other", 1)
    registry.delete_version("m", 2, reason="leaked labels")
    hist = registry.alias_history("m", "champ")
    assert [(e.version, e.reason) for e in hist] == [(2, None), (None, "version 2 was deleted: leaked labels")]
    assert hist[1].time >= hist[0].time and hist[1].seq == 2
    assert [e.version for e in registry.alias_history("m", "other")] == [1]  # untouched
    registry.delete_version("m", 1)
    assert [(e.version, e.reason) for e in registry.alias_history("m", "other")] == [(1, None), (None, "version 1 was deleted")]
    registry.create_version("m", D3)
    registry.set_alias("m", "champ", 3)
    assert [e.version for e in registry.alias_history("m", "champ")] == [2, None, 3]


def test_deleting_a_model_records_the_removal_of_each_live_alias(registry: Registry) -> None:
    for d in (D1, D2, D3):
        registry.create_version("m", d)
    registry.set_alias("m", "champ", 3)
    registry.set_alias("m", "gone", 2)
    registry.delete_version("m", 2)  # "gone" is removed here, and not a second time below
    registry.delete_alias("m", "champ")
    registry.set_alias("m", "champ", 1)
    registry.delete_model("m", reason="retired")
    champ = registry.alias_history("m", "champ")
    assert [(e.version, e.reason) for e in champ] == [
        (3, None), (None, None), (1, None), (None, "registered model 'm' was deleted: retired")
    ]
    assert [(e.version, e.reason) for e in registry.alias_history("m", "gone")] == [(2, None), (None, "version 2 was deleted")]


def test_an_interrupted_version_deletion_leaves_the_alias_removal_recorded_and_can_be_retried(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.create_version("m", D1)
    registry.set_alias("m", "champ", 1)

    def crash(*args: object, **kwargs: object) -> int:
        raise RuntimeError("crash before the deletion event")

    with monkeypatch.context() as mp:
        mp.setattr(registry, "_append_event", crash)
        with pytest.raises(RuntimeError):
            registry.delete_version("m", 1)
    # never an alias that stopped resolving with nothing on its record
    assert [e.version for e in registry.alias_history("m", "champ")] == [1, None]
    registry.delete_version("m", 1)
    assert [e.version for e in registry.alias_history("m", "champ")] == [1, None]
    assert [e.op for e in registry.history("m")] == ["delete_version"]


def test_a_recreated_model_is_created_at_its_recreation(registry: Registry) -> None:
    registry.create_version("m", D1)
    first = registry.get_model("m").creation_timestamp
    registry.delete_model("m")
    time.sleep(0.01)
    again = registry.create_model("m")
    recreated = registry.history("m")[-1]
    assert recreated.op == "create_model"
    assert again.creation_timestamp == recreated.time > first
    assert again.last_updated_timestamp >= again.creation_timestamp
    # the original creation stays on record: the model record is never rewritten
    assert unpack(registry.backend.get(L.model_key("m")), "model record")["created"] == first
    assert registry.create_version("m", D2).version == 2


def test_a_corrupt_version_record_is_reported(registry: Registry) -> None:
    registry.create_model("m")
    registry.backend.put_if_absent(L.version_key("m", 1), b"\xc1 not msgpack")
    with pytest.raises(CorruptRecordError):
        registry.get_version("m", 1)


def _register_from_threads(registries: list[Registry], each: int) -> list[int]:
    """Each registry, in a thread of its own, registers ``each`` versions of 'fraud' at once."""
    got: list[int] = []
    lock = threading.Lock()

    def work(reg: Registry) -> None:
        for _ in range(each):
            n = reg.create_version("fraud", D1).version
            with lock:
                got.append(n)

    threads = [threading.Thread(target=work, args=(r,)) for r in registries]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(got)


def test_concurrent_threads_get_distinct_consecutive_versions(registry: Registry) -> None:
    assert _register_from_threads([registry] * 4, 5) == list(range(1, 21))


_WORKER = textwrap.dedent(
    """
    import os, sys, time
    from casstore.backend import open_backend
    from casstore.registry import Registry
    store, go, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    reg = Registry(open_backend(store))
    while not os.path.exists(go):
        time.sleep(0.005)
    print(" ".join(str(reg.create_version("fraud", "%064x" % os.getpid()).version) for _ in range(n)))
    """
)


def test_concurrent_processes_get_distinct_consecutive_versions(tmp_path: Path) -> None:
    store = tmp_path / "store"
    open_store(store)
    go = tmp_path / "go"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = [
        subprocess.Popen([sys.executable, "-c", _WORKER, str(store), str(go), "5"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    time.sleep(0.5)
    go.touch()
    versions: list[int] = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        versions += [int(x) for x in out.split()]
    assert sorted(versions) == list(range(1, 21))
    reg = Registry(open_store(store).backend)
    records = reg.list_versions("fraud")
    assert [v.version for v in records] == list(range(1, 21))
    # each version pins the digest of the process that created it
    by_digest: dict[str, int] = {}
    for v in records:
        by_digest[v.model_digest] = by_digest.get(v.model_digest, 0) + 1
    assert sorted(by_digest.values()) == [5, 5, 5, 5]


def test_on_s3_concurrent_writers_get_distinct_consecutive_versions(s3_url: str) -> None:
    from casstore.backend import open_backend

    backend = open_store(s3_url).backend  # a registry lives in a store: its config says where model entries are
    assert backend.supports_atomic_create
    registries = [Registry(open_backend(s3_url)) for _ in range(4)]
    assert _register_from_threads(registries, 3) == list(range(1, 13))
    reg = Registry(backend)
    reg.set_alias("fraud", "prod", 12)
    assert reg.get_version_by_alias("fraud", "prod").model_digest == D1
