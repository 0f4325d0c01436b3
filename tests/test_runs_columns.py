"""A run's metric histories read as columns (what the UI's charts draw): the same points
as ``get_run`` gives, ordered by step then time, from a verified manifest only."""

from __future__ import annotations

from pathlib import Path

import pytest

from casstore.exceptions import CorruptRecordError, DamagedRunWarning, InvalidInputError, ObjectNotFoundError
from casstore.objects.codec import pack, pack_checked, unpack, unpack_checked
from casstore.runs import RunStore, layout, open_run_store
from casstore.runs.columns import metric_columns, point_columns


def _store(tmp_path: Path) -> RunStore:
    return open_run_store(str(tmp_path / "s"))


def _as_points(store: RunStore, run_id: str) -> dict[str, list[tuple[int, int, float]]]:
    """Each key's history as get_run gives it, ordered by step then time (a stable sort)."""
    out: dict[str, list[tuple[int, int, float]]] = {}
    for key, value, step, t in store.get_run(run_id).points:
        out.setdefault(key, []).append((step, t, value))
    return {k: sorted(v, key=lambda p: (p[0], p[1])) for k, v in out.items()}


def _columns(cols: dict[str, object]) -> dict[str, list[tuple[int, int, float]]]:
    return {k: list(zip(c.steps, c.times, c.values)) for k, c in cols.items()}  # type: ignore[attr-defined]


def test_columns_hold_every_point_by_key_in_step_then_time_order(tmp_path: Path) -> None:
    store = _store(tmp_path)
    h = store.create_run(store.get_or_create_experiment("e"))
    logged = [("loss", 0.5, 3, 10), ("acc", 0.1, 0, 10), ("loss", 0.9, 1, 12), ("loss", 0.7, 1, 11),
              ("acc", 0.2, 1, 11), ("loss", 0.6, 2, 20), ("loss", 0.65, 2, 20), ("z", 1, 5, 1)]
    for k, v, s, t in logged:
        h.log_metric(k, v, s, t)
    open_digest, open_cols = metric_columns(store, h.run_id)
    assert open_digest is None  # open: it can change, so nothing may be cached under a digest
    digest = h.end()
    sealed, cols = metric_columns(store, h.run_id)
    assert sealed == digest
    assert _columns(cols) == _columns(open_cols) == _as_points(store, h.run_id)
    # equal step and time keep logging order
    assert _columns(cols)["loss"] == [(1, 11, 0.7), (1, 12, 0.9), (2, 20, 0.6), (2, 20, 0.65), (3, 10, 0.5)]
    assert cols["z"].values.typecode == "d" and list(cols["z"].values) == [1.0]


def test_an_unknown_or_malformed_run_id_is_refused(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with pytest.raises(ObjectNotFoundError, match="0" * 32):
        metric_columns(store, "0" * 32)
    with pytest.raises(InvalidInputError):
        metric_columns(store, "../x")


@pytest.mark.parametrize("bad", [
    [("loss", 1.0, 0)], ["loss"], [("loss", "1.0", 0, 0)], [(1, 1.0, 0, 0)], [("loss", 1.0, 0.5, 0)],
    [("loss", 1.0, 0, None)], [("loss", 1.0, 0, 2**70)], [("loss", 1.0, 0, 0), ("loss", 1.0, "1", 0)],
])
def test_a_malformed_point_is_a_corrupt_record_naming_where(bad: list[object]) -> None:
    with pytest.raises(CorruptRecordError, match="manifest of run r"):
        point_columns(bad, "manifest of run r")


def _ended_run(store: RunStore) -> tuple[str, dict[str, list[tuple[int, int, float]]]]:
    h = store.create_run(store.get_or_create_experiment("e"))
    for s in range(50):
        h.log_metric("loss", 1.0 / (s + 1), s, 1000 + s)
    h.end()
    return h.run_id, _as_points(store, h.run_id)


def test_a_manifest_that_does_not_match_the_seals_digest_is_never_charted(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.compacts = False  # the end stops after the seal (a writer killed there): the batches stay
    run_id, truth = _ended_run(store)
    key = layout.seal_key(run_id)
    seal = unpack_checked(store.backend.get(key), required=True)
    man = unpack(seal["manifest"])
    man["metrics"][0][1] = 42.0  # a different history, in a seal that checks itself
    seal["manifest"] = pack(man)
    (tmp_path / "s" / key).write_bytes(pack_checked(seal))
    with pytest.warns(DamagedRunWarning, match="shown from its own records"):
        digest, cols = metric_columns(store, run_id)
    assert digest is None and _columns(cols) == truth


def test_a_damaged_seal_gives_the_points_that_verify(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.compacts = False  # the end stops after the seal (a writer killed there): the batches stay
    run_id, truth = _ended_run(store)
    path = tmp_path / "s" / layout.seal_key(run_id)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.warns(DamagedRunWarning, match="seal"):
        digest, cols = metric_columns(store, run_id)
    assert digest is None and _columns(cols) == truth
