"""MLflow's search grammar for runs and experiments: a tokenizer, a parser and an evaluator.

A filter is comparisons joined by ``AND``::

    metrics.accuracy > 0.9 AND params.solver = 'lbfgs' AND tags.`team name` LIKE 'ml-%'
    attributes.status = 'FINISHED' AND attributes.run_id IN ('ab12...', 'cd34...')

Identifiers are ``metrics.<key>``, ``params.<key>``, ``tags.<key>`` or
``attributes.<name>`` (a bare name is an attribute); a key with other characters
is quoted with backticks or double quotes. Metrics compare with numbers
(``= != < <= > >=``); params and tags with quoted strings (``= != LIKE ILIKE``), or
``IS NULL`` / ``IS NOT NULL`` (whether a run lacks it); string attributes also take
``IN``/``NOT IN``; time attributes compare as numbers. A run that lacks the metric,
param or tag a comparison names does not match it (but for ``IS NULL``).

``order_by`` items are ``<identifier> [ASC|DESC]``; runs missing the value sort last.
A client search answers one page at a time: a :class:`PagedList` and its ``token``.

>>> [str(c) for c in parse_filter("metrics.acc >= 0.9 and params.C = '0.1'")]
['metrics.acc >= 0.9', "params.C = '0.1'"]
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, Union

from casstore.exceptions import InvalidInputError

__all__ = [
    "NULL_OPS",
    "PagedList",
    "Comparison",
    "OrderKey",
    "parse_filter",
    "parse_order_by",
    "matches",
    "sort_items",
    "RUN_ATTRIBUTES",
    "EXPERIMENT_ATTRIBUTES",
    "Getter",
]

Value = Union[float, str, tuple[str, ...]]
#: ``getter(entity, key)`` returns the item's value, or ``None`` if it has none
Getter = Callable[[str, str], Any]
T = TypeVar("T")

#: run attributes and their types ("str" or "num")
RUN_ATTRIBUTES: Mapping[str, str] = {
    "run_id": "str",
    "run_name": "str",
    "status": "str",
    "artifact_uri": "str",
    "user_id": "str",
    "experiment_id": "str",
    "digest": "str",
    "start_time": "num",
    "end_time": "num",
    "duration": "num",  # end_time - start_time in ms; none while the run is running
}
EXPERIMENT_ATTRIBUTES: Mapping[str, str] = {
    "name": "str",
    "experiment_id": "str",
    "lifecycle_stage": "str",
    "creation_time": "num",
    "last_update_time": "num",
}
_ATTR_ALIASES = {"created": "start_time", "Created": "start_time", "run name": "run_name", "runName": "run_name"}

_ENTITIES = {
    "metric": "metrics", "metrics": "metrics",
    "param": "params", "params": "params", "parameter": "params", "parameters": "params",
    "tag": "tags", "tags": "tags",
    "attribute": "attributes", "attributes": "attributes", "attr": "attributes", "run": "attributes",
}
_NUM_OPS = ("=", "!=", "<", "<=", ">", ">=")
_STR_OPS = ("=", "!=", "LIKE", "ILIKE")
_SET_OPS = ("IN", "NOT IN")
#: whether an item lacks a param or tag (no value follows them)
NULL_OPS = ("IS NULL", "IS NOT NULL")

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<op><=|>=|!=|<>|==|=|<|>)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
  | (?P<str>'(?:[^']|'')*'|"(?:[^"]|"")*")
  | (?P<btick>`[^`]*`)
  | (?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.]))
  | (?P<word>[\w.\-/:]+)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Comparison:
    """One clause: ``<entity>.<key> <op> <value>``; entity is metrics/params/tags/attributes."""

    entity: str
    key: str
    op: str
    value: Value

    def __str__(self) -> str:
        if self.op in NULL_OPS:
            return f"{_render_ident(self.entity, self.key)} {self.op}"
        return f"{_render_ident(self.entity, self.key)} {self.op} {_render_value(self.value)}"


@dataclass(frozen=True)
class OrderKey:
    entity: str
    key: str
    ascending: bool = True

    def __str__(self) -> str:
        return f"{_render_ident(self.entity, self.key)} {'ASC' if self.ascending else 'DESC'}"


def _render_ident(entity: str, key: str) -> str:
    if re.fullmatch(r"[A-Za-z_][\w.\-/:]*", key) and not re.fullmatch(r"(?i)and|in|not|like|ilike|asc|desc", key):
        return f"{entity}.{key}"
    return f"{entity}.`{key}`"


def _render_value(v: Value) -> str:
    if isinstance(v, tuple):
        return "(" + ", ".join(_quote(x) for x in v) + ")"
    if isinstance(v, float):
        return repr(v)
    return _quote(v)


def _quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _err(text: str, why: str, what: str = "search filter") -> InvalidInputError:
    return InvalidInputError(f"invalid {what} {text!r}: {why}")


def _tokenize(text: str, what: str = "search filter") -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise _err(text, f"unexpected character {text[pos]!r} at position {pos}", what)
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append((kind, m.group()))
        pos = m.end()
    return out


def _unquote(tok: str) -> str:
    q = tok[0]
    body = tok[1:-1]
    return body.replace(q + q, q) if q in "'\"" else body


def _identifier(text: str, toks: list[tuple[str, str]], i: int, attributes: Mapping[str, str],
                what: str = "search filter") -> tuple[str, str, int]:
    """Parse ``entity.key`` at ``toks[i]``; return entity, key and the next index."""
    if i >= len(toks):
        raise _err(text, "expected an identifier such as metrics.accuracy at the end", what)
    kind, tok = toks[i]
    if kind == "word" and "." in tok:
        head, key = tok.split(".", 1)
        if head.lower() in ("dataset", "datasets"):  # MLflow's, which the search index does not hold
            raise _err(text, f"{tok!r}: casstore's run search does not filter by dataset inputs; filter by "
                             "metrics., params., tags. or attributes., then read each run's get_run(id).inputs", what)
        if head.lower() not in _ENTITIES:
            raise _err(text, f"unknown entity {head!r} in {tok!r}; use metrics., params., tags. or attributes.", what)
        entity = _ENTITIES[head.lower()]
        if key == "":  # quoted key follows: metrics.`my key` / metrics."my key"
            if i + 1 >= len(toks) or toks[i + 1][0] not in ("btick", "str"):
                raise _err(text, f"{tok!r} needs a key after the dot", what)
            key = _unquote(toks[i + 1][1])
            i += 1
        i += 1
    elif kind in ("word", "btick", "str") and (kind != "str" or tok[0] == '"'):
        entity, key = "attributes", _unquote(tok) if kind != "word" else tok
        i += 1
    else:
        raise _err(text, f"expected an identifier such as metrics.accuracy, got {tok!r}", what)
    if not key:
        raise _err(text, "an identifier has an empty key", what)
    if entity == "attributes":
        key = _ATTR_ALIASES.get(key, key)
        if key not in attributes:
            raise _err(text, f"unknown attribute {key!r}; valid attributes: {sorted(attributes)}", what)
    return entity, key, i


def parse_filter(text: str | None, attributes: Mapping[str, str] = RUN_ATTRIBUTES) -> list[Comparison]:
    """Parse a filter string into comparisons (all must hold); ``""``/``None`` gives ``[]``."""
    if text is None:
        return []
    if not isinstance(text, str):
        raise InvalidInputError(f"filter_string must be a string, got {type(text).__name__}")
    toks = _tokenize(text)
    out: list[Comparison] = []
    i = 0
    while i < len(toks):
        if out:
            if toks[i][0] == "word" and toks[i][1].upper() == "AND":
                i += 1
            elif toks[i][0] == "word" and toks[i][1].upper() == "OR":
                raise _err(text, "OR is not supported; run one search per alternative")
            else:
                raise _err(text, f"expected AND between comparisons, got {toks[i][1]!r}")
        entity, key, i = _identifier(text, toks, i, attributes)
        op, i = _operator(text, toks, i)
        value, i = ("", i) if op in NULL_OPS else _value(text, toks, i)
        out.append(_check(text, Comparison(entity, key, op, value), attributes))
    return out


def _operator(text: str, toks: list[tuple[str, str]], i: int) -> tuple[str, int]:
    if i >= len(toks):
        raise _err(text, "a comparison lacks its operator")
    kind, tok = toks[i]
    if kind == "op":
        return {"==": "=", "<>": "!="}.get(tok, tok), i + 1
    up = tok.upper() if kind == "word" else ""
    if up in ("LIKE", "ILIKE", "IN"):
        return up, i + 1
    if up == "NOT" and i + 1 < len(toks) and toks[i + 1][1].upper() == "IN":
        return "NOT IN", i + 2
    if up == "IS":
        words = [t.upper() for _, t in toks[i + 1:i + 3]]
        if words[:1] == ["NULL"]:
            return "IS NULL", i + 2
        if words == ["NOT", "NULL"]:
            return "IS NOT NULL", i + 3
        raise _err(text, "IS is followed by NULL or NOT NULL")
    raise _err(text, f"expected a comparison operator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN, IS NULL), got {tok!r}")


def _value(text: str, toks: list[tuple[str, str]], i: int) -> tuple[Value, int]:
    if i >= len(toks):
        raise _err(text, "a comparison lacks its value")
    kind, tok = toks[i]
    if kind == "num":
        return float(tok), i + 1
    if kind == "str":
        return _unquote(tok), i + 1
    if kind == "lparen":
        items: list[str] = []
        i += 1
        while True:
            if i >= len(toks) or toks[i][0] != "str":
                raise _err(text, "IN takes a parenthesised list of quoted strings, such as ('a', 'b')")
            items.append(_unquote(toks[i][1]))
            i += 1
            if i < len(toks) and toks[i][0] == "comma":
                i += 1
                continue
            if i < len(toks) and toks[i][0] == "rparen":
                return tuple(items), i + 1
            raise _err(text, "unclosed list after IN")
    raise _err(text, f"expected a number or a quoted string, got {tok!r} (quote strings with ' or \")")


def _check(text: str, c: Comparison, attributes: Mapping[str, str]) -> Comparison:
    if c.op in NULL_OPS:
        if c.entity not in ("params", "tags"):
            raise _err(text, f"{c.op} is supported for params and tags, not {c.entity}.{c.key}")
        return c
    numeric = c.entity == "metrics" or (c.entity == "attributes" and attributes[c.key] == "num")
    if numeric:
        if c.op not in _NUM_OPS:
            raise _err(text, f"{c.entity}.{c.key} takes one of {', '.join(_NUM_OPS)}, not {c.op}")
        if not isinstance(c.value, float):
            raise _err(text, f"{c.entity}.{c.key} compares with a number, got {_render_value(c.value)}")
        return c
    ops = _STR_OPS + (_SET_OPS if c.entity == "attributes" else ())
    if c.op not in ops:
        raise _err(text, f"{c.entity}.{c.key} takes one of {', '.join(ops)}, not {c.op}")
    if c.op in _SET_OPS:
        if not isinstance(c.value, tuple):
            raise _err(text, f"{c.op} takes a parenthesised list of quoted strings")
    elif not isinstance(c.value, str):
        raise _err(
            text,
            f"{c.entity}.{c.key} compares with a quoted string, got {_render_value(c.value)} "
            f"(write {_quote(format_number(c.value)) if isinstance(c.value, float) else 'a quoted string'})",
        )
    return c


def format_number(v: float) -> str:
    return str(int(v)) if v.is_integer() and abs(v) < 1e16 else repr(v)


def like_to_regex(pattern: str, case_insensitive: bool = False) -> re.Pattern[str]:
    """SQL LIKE: ``%`` is any run of characters, ``_`` any one character."""
    out = []
    for ch in pattern:
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
    return re.compile("".join(out), re.DOTALL | (re.IGNORECASE if case_insensitive else 0))


def _compare(actual: Any, op: str, value: Value) -> bool:
    if op in NULL_OPS:
        return (actual is None) == (op == "IS NULL")
    if actual is None:
        return False
    if isinstance(value, float):
        try:
            a = float(actual)
        except (TypeError, ValueError):
            return False
        if math.isnan(a) or math.isnan(value):
            return op == "!=" if not (math.isnan(a) and math.isnan(value)) else op == "="
        return {
            "=": a == value, "!=": a != value, "<": a < value,
            "<=": a <= value, ">": a > value, ">=": a >= value,
        }[op]
    a_str = str(actual)
    if op == "=":
        return a_str == value
    if op == "!=":
        return a_str != value
    if op in ("LIKE", "ILIKE"):
        return like_to_regex(str(value), op == "ILIKE").fullmatch(a_str) is not None
    if op == "IN":
        return a_str in value
    if op == "NOT IN":
        return a_str not in value
    return False


def matches(comparisons: Sequence[Comparison], get: Getter) -> bool:
    """Whether an item (seen through ``get(entity, key)``) satisfies every comparison."""
    return all(_compare(get(c.entity, c.key), c.op, c.value) for c in comparisons)


def parse_order_by(
    order_by: Iterable[str] | None, attributes: Mapping[str, str] = RUN_ATTRIBUTES
) -> list[OrderKey]:
    """Parse ``["metrics.accuracy DESC", "start_time"]`` into order keys."""
    if order_by is None:
        return []
    if isinstance(order_by, str):
        order_by = [order_by]
    out = []
    for item in order_by:
        if not isinstance(item, str):
            raise InvalidInputError(f"order_by items must be strings, got {item!r}")
        toks = _tokenize(item, "order_by")
        entity, key, i = _identifier(item, toks, 0, attributes, "order_by")
        ascending = True
        if i < len(toks) and toks[i][0] == "word" and toks[i][1].upper() in ("ASC", "DESC"):
            ascending = toks[i][1].upper() == "ASC"
            i += 1
        if i != len(toks):
            raise InvalidInputError(
                f"invalid order_by {item!r}: expected '<identifier> [ASC|DESC]', such as 'metrics.accuracy DESC'"
            )
        out.append(OrderKey(entity, key, ascending))
    return out


def _sort_value(v: Any, numeric: bool) -> tuple[int, Any]:
    if v is None:
        return (1, 0)
    if numeric:
        try:
            f = float(v)
        except (TypeError, ValueError):
            return (1, 0)
        return (1, 0) if math.isnan(f) else (0, f)
    return (0, str(v))


def sort_items(
    items: list[T], keys: Sequence[OrderKey], get: Callable[[T, str, str], Any],
    attributes: Mapping[str, str] = RUN_ATTRIBUTES,
) -> list[T]:
    """Sort by ``keys`` (stable; items lacking a value go last in either direction)."""
    out = list(items)
    for k in reversed(keys):
        numeric = k.entity == "metrics" or (k.entity == "attributes" and attributes.get(k.key) == "num")
        present = [x for x in out if _sort_value(get(x, k.entity, k.key), numeric)[0] == 0]
        missing = [x for x in out if _sort_value(get(x, k.entity, k.key), numeric)[0] == 1]
        present.sort(key=lambda x: _sort_value(get(x, k.entity, k.key), numeric)[1], reverse=not k.ascending)
        out = present + missing
    return out


class PagedList(list[T]):
    """One page of a client search (MLflow's ``PagedList``): a list, and ``token``, which
    asks for the next page (``None`` on the last)."""

    def __init__(self, items: Iterable[T], token: str | None) -> None:
        super().__init__(items)
        self.token = token

    @staticmethod
    def offset_of(page_token: str | None) -> int:
        """Where the page a token asks for starts (0 without one)."""
        if not page_token:
            return 0
        try:
            offset = json.loads(base64.urlsafe_b64decode(page_token.encode()))["offset"]
        except (ValueError, KeyError, TypeError) as e:
            raise InvalidInputError(f"invalid page_token {page_token!r}: pass the token of the previous page") from e
        if not isinstance(offset, int) or offset < 0:
            raise InvalidInputError(f"invalid page_token {page_token!r}: pass the token of the previous page")
        return offset

    @classmethod
    def page(cls, found: list[T], offset: int, max_results: int | None) -> PagedList[T]:
        """The page of ``found`` (which may hold one item beyond it) from ``offset`` on."""
        if max_results is None or len(found) <= offset + max_results:
            return cls(found[offset:], None)
        token = base64.urlsafe_b64encode(json.dumps({"offset": offset + max_results}).encode()).decode()
        return cls(found[offset : offset + max_results], token)
