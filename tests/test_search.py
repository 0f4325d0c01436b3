"""MLflow's filter grammar for search_runs: parsing, errors, evaluation, ordering."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casstore.exceptions import InvalidInputError
from casstore.runs.search import (
    Comparison,
    OrderKey,
    matches,
    parse_filter,
    parse_order_by,
    sort_items,
)


def test_parses_each_entity_and_operator() -> None:
    got = parse_filter(
        "metrics.acc >= 0.9 AND params.solver = 'lbfgs' and tags.`team name` LIKE 'ml-%' "
        "AND attributes.status != \"FAILED\" AND run_id IN ('a', 'b') AND start_time < 10 "
        "AND tags.mlflow.runName ILIKE '%iris%' AND attributes.run_id NOT IN ('c')"
    )
    assert got == [
        Comparison("metrics", "acc", ">=", 0.9),
        Comparison("params", "solver", "=", "lbfgs"),
        Comparison("tags", "team name", "LIKE", "ml-%"),
        Comparison("attributes", "status", "!=", "FAILED"),
        Comparison("attributes", "run_id", "IN", ("a", "b")),
        Comparison("attributes", "start_time", "<", 10.0),
        Comparison("tags", "mlflow.runName", "ILIKE", "%iris%"),
        Comparison("attributes", "run_id", "NOT IN", ("c",)),
    ]


def test_entity_aliases_quotes_and_escapes() -> None:
    assert parse_filter('metric."my metric" = -1.5e2') == [Comparison("metrics", "my metric", "=", -150.0)]
    assert parse_filter("param.x = 'it''s'") == [Comparison("params", "x", "=", "it's")]
    assert parse_filter("attr.created > 5") == [Comparison("attributes", "start_time", ">", 5.0)]
    assert parse_filter("") == [] and parse_filter(None) == []


@pytest.mark.parametrize(
    "bad, message",
    [
        ("metrics.a = 'x'", "compares with a number"),
        ("params.C = 0.1", "quoted string"),
        ("params.C > '1'", "takes one of"),
        ("tags.t IN ('a')", "takes one of"),
        ("foo.x = 1", "unknown entity"),
        ("datasets.name = 'train'", "does not filter by dataset inputs.*get_run\\(id\\).inputs"),
        ("bogus = 'x'", "unknown attribute"),
        ("metrics.a > 1 OR metrics.b > 2", "OR is not supported"),
        ("metrics.a > 1 metrics.b > 2", "expected AND"),
        ("metrics.a >", "lacks its value"),
        ("metrics.a", "lacks its operator"),
        ("metrics.a ~ 1", "unexpected character"),
        ("run_id IN 'a'", "parenthesised"),
        ("run_id IN ('a'", "unclosed"),
        ("metrics. = 1", "needs a key"),
    ],
)
def test_bad_filters_raise_a_clear_error(bad: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message) as e:
        parse_filter(bad)
    assert bad in str(e.value)


def test_order_by_parsing() -> None:
    assert parse_order_by(["metrics.accuracy DESC", "start_time", "params.`a b` asc"]) == [
        OrderKey("metrics", "accuracy", False),
        OrderKey("attributes", "start_time", True),
        OrderKey("params", "a b", True),
    ]
    with pytest.raises(InvalidInputError, match="ASC|DESC"):
        parse_order_by(["metrics.a DESC extra"])
    # a bad order names itself as the order, not as a filter
    for bad, why in [("bogus", "unknown attribute 'bogus'"), ("nonsense.x", "unknown entity"), ("metrics.a ~", "unexpected")]:
        with pytest.raises(InvalidInputError) as e:
            parse_order_by([bad])
        assert str(e.value).startswith(f"invalid order_by {bad!r}: ") and why in str(e.value)


def _getter(run: dict[str, Any]) -> Any:
    return lambda entity, key: run.get(entity, {}).get(key)


def test_missing_values_do_not_match_even_with_not_equal() -> None:
    run = {"metrics": {"a": 1.0}, "params": {}, "tags": {}, "attributes": {}}
    assert matches(parse_filter("metrics.a = 1"), _getter(run))
    assert not matches(parse_filter("metrics.b != 1"), _getter(run))
    assert not matches(parse_filter("params.p != 'x'"), _getter(run))


def test_is_null_asks_whether_a_param_or_tag_is_missing() -> None:
    got = parse_filter("tags.best IS NULL and params.`a b` is not null")
    assert got == [Comparison("tags", "best", "IS NULL", ""), Comparison("params", "a b", "IS NOT NULL", "")]
    assert [str(c) for c in got] == ["tags.best IS NULL", "params.`a b` IS NOT NULL"]
    assert parse_filter(" AND ".join(str(c) for c in got)) == got
    run = {"params": {"a b": "1"}, "tags": {}}
    assert matches(got, _getter(run)) and not matches(parse_filter("params.`a b` IS NULL"), _getter(run))
    for bad, why in [("metrics.m IS NULL", "params and tags"), ("run_name IS NULL", "params and tags"),
                     ("tags.t IS 'x'", "NULL or NOT NULL")]:
        with pytest.raises(InvalidInputError, match=why):
            parse_filter(bad)


def test_like_is_case_sensitive_and_ilike_is_not() -> None:
    run = {"tags": {"t": "Iris-Model"}}
    assert matches(parse_filter("tags.t LIKE 'Iris%'"), _getter(run))
    assert not matches(parse_filter("tags.t LIKE 'iris%'"), _getter(run))
    assert matches(parse_filter("tags.t ILIKE 'iris%'"), _getter(run))
    assert matches(parse_filter("tags.t LIKE 'Iris_Mod%'"), _getter(run))
    assert not matches(parse_filter("tags.t LIKE 'Iris'"), _getter(run))


def test_sort_puts_missing_values_last_in_both_directions() -> None:
    runs = [{"id": i, "metrics": {"m": v} if v is not None else {}} for i, v in enumerate([3.0, None, 1.0, 2.0])]

    def get(r: dict[str, Any], entity: str, key: str) -> Any:
        return r.get(entity, {}).get(key)

    asc = sort_items(runs, parse_order_by(["metrics.m ASC"]), get)
    desc = sort_items(runs, parse_order_by(["metrics.m DESC"]), get)
    assert [r["id"] for r in asc] == [2, 3, 0, 1]
    assert [r["id"] for r in desc] == [0, 3, 2, 1]


# ---- properties ------------------------------------------------------------------------------

_key = st.from_regex(r"[A-Za-z][A-Za-z0-9_.\-/: ]{0,10}", fullmatch=True).filter(
    lambda k: not k.endswith((" ", ".")) and "//" not in k and ".." not in k and "/." not in k and "./" not in k
)
_text = st.text(alphabet="abcAB_%-x' ", max_size=6)
_num = st.floats(allow_nan=False, allow_infinity=False, width=32).map(float)


@st.composite
def comparisons(draw: st.DrawFn) -> Comparison:
    entity = draw(st.sampled_from(["metrics", "params", "tags", "attributes"]))
    if entity == "metrics":
        return Comparison(entity, draw(_key), draw(st.sampled_from(["=", "!=", "<", "<=", ">", ">="])), draw(_num))
    if entity == "attributes":
        key = draw(st.sampled_from(["status", "run_name", "start_time", "run_id"]))
        if key == "start_time":
            return Comparison(entity, key, draw(st.sampled_from(["=", "<", ">="])), draw(_num))
        op = draw(st.sampled_from(["=", "!=", "LIKE", "ILIKE", "IN", "NOT IN"]))
        value: Any = tuple(draw(st.lists(_text, min_size=1, max_size=3))) if "IN" in op else draw(_text)
        return Comparison(entity, key, op, value)
    return Comparison(entity, draw(_key), draw(st.sampled_from(["=", "!=", "LIKE", "ILIKE"])), draw(_text))


@settings(max_examples=300, deadline=None)
@given(st.lists(comparisons(), min_size=1, max_size=4))
def test_rendered_filters_parse_back_to_the_same_comparisons(cs: list[Comparison]) -> None:
    text = " AND ".join(str(c) for c in cs)
    assert parse_filter(text) == cs


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_any_text_parses_or_raises_invalid_input(text: str) -> None:
    try:
        parse_filter(text)
    except InvalidInputError:
        pass


# The evaluator against an independent oracle: SQLite running the same filter as SQL.

_small_keys = st.sampled_from(["a", "b", "c d"])
_small_text = st.text(alphabet="abAB_%x", max_size=3)


@st.composite
def runs(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "metrics": draw(st.dictionaries(_small_keys, st.sampled_from([-1.0, 0.0, 0.5, 1.0, 2.0]))),
        "params": draw(st.dictionaries(_small_keys, _small_text)),
        "tags": draw(st.dictionaries(_small_keys, _small_text)),
        "attributes": {"status": draw(st.sampled_from(["RUNNING", "FINISHED", "FAILED"]))},
    }


@st.composite
def small_comparisons(draw: st.DrawFn) -> Comparison:
    entity = draw(st.sampled_from(["metrics", "params", "tags", "attributes"]))
    if entity == "metrics":
        return Comparison(entity, draw(_small_keys), draw(st.sampled_from(["=", "!=", "<", "<=", ">", ">="])),
                          draw(st.sampled_from([-1.0, 0.0, 0.5, 1.0, 2.0])))
    if entity == "attributes":
        op = draw(st.sampled_from(["=", "!=", "LIKE", "ILIKE"]))
        return Comparison(entity, "status", op, draw(st.sampled_from(["RUNNING", "FIN%", "f%", "_AILED", "x"])))
    return Comparison(entity, draw(_small_keys), draw(st.sampled_from(["=", "!=", "LIKE", "ILIKE"])), draw(_small_text))


def _sql_matches(run: dict[str, Any], cs: list[Comparison]) -> bool:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE kv (entity TEXT, key TEXT, value)")
    for entity, values in run.items():
        db.executemany("INSERT INTO kv VALUES (?, ?, ?)", [(entity, k, v) for k, v in values.items()])
    clauses, args = [], []
    for c in cs:
        op = {"ILIKE": "LIKE"}.get(c.op, c.op)
        value = c.value
        if c.op == "ILIKE":
            pass  # SQLite's LIKE ignores ASCII case
        elif c.op == "LIKE":
            op = "GLOB"  # case-sensitive: translate the LIKE pattern to GLOB
            value = str(value).replace("[", "[[]").replace("*", "[*]").replace("?", "[?]")
            value = value.replace("%", "*").replace("_", "?")
        clauses.append(f"EXISTS (SELECT 1 FROM kv WHERE entity = ? AND key = ? AND value {op} ?)")
        args += [c.entity, c.key, value]
    (found,) = db.execute("SELECT " + " AND ".join(clauses), args).fetchone()
    db.close()
    return bool(found)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs(), st.lists(small_comparisons(), min_size=1, max_size=3))
def test_evaluation_agrees_with_sqlite(run: dict[str, Any], cs: list[Comparison]) -> None:
    text = " AND ".join(str(c) for c in cs)
    assert matches(parse_filter(text), _getter(run)) == _sql_matches(run, cs)
