"""The one strict parser of scoring requests, and the JSON form of predictions.

MLflow's ``/invocations`` protocol: ``Content-Type`` is ``application/json`` or
``text/csv`` (UTF-8, no other parameter; anything else is 415). A JSON body is an
object with exactly one of ``dataframe_split``, ``dataframe_records``, ``instances``,
``inputs``, and optionally ``params``; any other key is refused. A CSV body has a
header row. Values are typed by the model's signature here, where a JSON number or a
CSV field becomes the column's or tensor's type; a value that does not fit is a 400
that names the column or input and the type it needs, never the value itself.

>>> parse_request(b'{"inputs": [[1, 2]]}', "application/json", None).data
array([[1, 2]])
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import io
import json
from dataclasses import dataclass
from typing import Any

from casstore.exceptions import InvalidInputError
from casstore.models.signature import NUMPY_DTYPES, ColSpec, DataType, Schema, TensorSpec

__all__ = [
    "CSV",
    "FORMATS",
    "JSON",
    "MAX_MESSAGE",
    "Parsed",
    "ScoringError",
    "bounded",
    "media_type",
    "parse_request",
    "predictions_body",
    "jsonable",
]

JSON = "application/json"
CSV = "text/csv"
FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
PARAMS = "params"
#: error messages are cut to this many characters
MAX_MESSAGE = 1000
_REQUIRED = f"the body must be a JSON object with exactly one of the keys {', '.join(FORMATS)} (and optionally params)"
#: MLflow's error codes: a request it cannot read, and one its model's signature refuses
BAD_REQUEST = "BAD_REQUEST"
INVALID_PARAMETER_VALUE = "INVALID_PARAMETER_VALUE"


def bounded(message: str, limit: int = MAX_MESSAGE) -> str:
    """``message`` cut to ``limit`` characters."""
    return message if len(message) <= limit else message[: limit - 24] + " ... (message truncated)"


def _name(text: object, limit: int = 60) -> str:
    """A name from the request (a key, a media type), quoted and cut short."""
    s = str(text)
    return repr(s if len(s) <= limit else s[:limit] + "...")


class ScoringError(InvalidInputError):
    """A request the server refuses: its HTTP status, MLflow's error code, and a message
    (bounded, and never holding the request's values)."""

    def __init__(self, message: str, *, status: int = 400, error_code: str = BAD_REQUEST) -> None:
        super().__init__(bounded(message), error_code=error_code)
        self.status = status


@dataclass(frozen=True)
class Parsed:
    """A request's model input, typed by the signature, and its inference params."""

    data: Any
    params: dict[str, Any] | None = None


def media_type(content_type: str | None) -> str:
    """The request's media type (``application/json`` or ``text/csv``); 415 otherwise."""
    if not content_type or not content_type.strip():
        raise ScoringError(f"the request has no Content-Type; send {JSON} or {CSV}", status=415)
    head, *rest = content_type.split(";")
    mime = head.strip().lower()
    params: dict[str, str] = {}
    for part in rest:
        if part.strip():
            key, _, value = part.partition("=")
            params[key.strip().lower()] = value.strip().strip('"').lower()
    charset = params.pop("charset", "utf-8")
    if charset not in ("utf-8", "utf8"):
        raise ScoringError("the scoring server reads UTF-8 only; send charset=utf-8 or no charset", status=415)
    if params:
        raise ScoringError(
            f"unknown Content-Type parameters {', '.join(_name(k, 30) for k in sorted(params)[:5])}; only charset is read",
            status=415,
        )
    if mime not in (JSON, CSV):
        raise ScoringError(f"this server takes {JSON} or {CSV}, not {_name(mime)}", status=415)
    return mime


def parse_request(body: bytes, content_type: str | None, schema: Schema | None) -> Parsed:
    """The model input of an ``/invocations`` request, typed by ``schema`` (the model's
    input schema, if it has one)."""
    mime = media_type(content_type)
    text = _text(body)
    if mime == CSV:
        return Parsed(_csv(text, schema))
    return _json(text, schema)


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ScoringError(f"the body is not UTF-8 text (an invalid byte at offset {e.start})") from None


# ---- JSON ------------------------------------------------------------------------------


def _json(text: str, schema: Schema | None) -> Parsed:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ScoringError(f"the body is not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
    except RecursionError:
        raise ScoringError("the body is not JSON casstore reads: it is nested too deeply") from None
    if not isinstance(doc, dict):
        raise ScoringError(f"{_REQUIRED}; got a JSON {_kind(doc)}")
    forms = [k for k in FORMATS if k in doc]
    unknown = [k for k in doc if k not in FORMATS and k != PARAMS]
    if unknown:
        raise ScoringError(f"{_REQUIRED}; it has {len(unknown)} other key{'s' if len(unknown) > 1 else ''}")
    if len(forms) != 1:
        raise ScoringError(f"{_REQUIRED}; it has {len(forms)} of them{': ' + ', '.join(forms) if forms else ''}")
    params = doc.get(PARAMS)
    if params is not None and not isinstance(params, dict):
        raise ScoringError(f"params must be a JSON object of parameter names and values, got a JSON {_kind(params)}")
    form = forms[0]
    value = doc[form]
    if form == "dataframe_split":
        data: Any = _typed_frame(*_split(value), schema)
    elif form == "dataframe_records":
        data = _typed_frame(_records(value, form), None, schema)
    elif form == "instances" and isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
        data = _typed_columns(_columns_of(value), schema, form)
    else:
        data = _typed_value(value, schema, form)
    return Parsed(data, params)


def _kind(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def _pd() -> Any:
    try:
        import pandas as pd
    except ImportError as e:  # pragma: no cover - the serve extra installs pandas
        raise InvalidInputError("serving needs pandas: pip install 'casstore[serve]'") from e
    return pd


Columns = dict[Any, Any]  # column name -> its values in row order


def _split(value: object) -> tuple[Columns, list[Any] | None]:
    """``dataframe_split``: ``{"columns"?, "data", "index"?}`` (pandas' ``split`` orient)
    as its columns and index."""
    if not isinstance(value, dict):
        raise ScoringError(f"dataframe_split must be a JSON object with 'data' (and optionally 'columns', 'index'), got a JSON {_kind(value)}")
    extra = [k for k in value if k not in ("columns", "data", "index")]
    if "data" not in value or extra:
        raise ScoringError(
            "dataframe_split must have 'data' and optionally 'columns' and 'index'"
            + (f"; it has {len(extra)} other key{'s' if len(extra) > 1 else ''}" if extra else "; it has no 'data'")
        )
    data, columns, index = value["data"], value.get("columns"), value.get("index")
    if not isinstance(data, list):
        raise ScoringError(f"dataframe_split 'data' must be an array of rows, got a JSON {_kind(data)}")
    if columns is not None and (not isinstance(columns, list) or not all(isinstance(c, (str, int)) for c in columns)):
        raise ScoringError("dataframe_split 'columns' must be an array of column names")
    if index is not None and (not isinstance(index, list) or len(index) != len(data)):
        raise ScoringError(f"dataframe_split 'index' must be an array of {len(data)} labels, one per row of 'data'")
    rows = [r if isinstance(r, list) else [r] for r in data]
    widths = {len(r) for r in rows}
    width = len(columns) if columns is not None else (widths.pop() if len(widths) == 1 else None)
    for i, r in enumerate(rows):
        if width is None or len(r) != width:
            raise ScoringError(
                f"dataframe_split row {i} has {len(r)} values, "
                + (f"but there are {width} columns" if width is not None else "but the rows differ in length")
            )
    names = columns if columns is not None else list(range(width or 0))
    values = list(zip(*rows)) if rows else [() for _ in names]
    return {n: list(v) for n, v in zip(names, values)}, index


def _records(value: object, form: str) -> Columns:
    """``dataframe_records``: an array of ``{column: value}`` objects, as columns (a key a
    record lacks is null there, as pandas reads records)."""
    if not isinstance(value, list):
        raise ScoringError(f"{form} must be an array of records (JSON objects), got a JSON {_kind(value)}")
    for i, r in enumerate(value):
        if not isinstance(r, dict):
            raise ScoringError(f"{form} record {i} is a JSON {_kind(r)}, not an object of column values")
    keys = dict.fromkeys(k for r in value for k in r)
    return {k: [r.get(k) for r in value] for k in keys}


def _columns_of(records: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """``instances`` as records: each key's values in row order (every record has every key)."""
    keys = list(records[0])
    for i, r in enumerate(records):
        if set(r) != set(keys):
            raise ScoringError(f"instances record {i} has other keys than record 0; every record needs the same keys")
    return {k: [r[k] for r in records] for k in keys}


def _typed_value(value: Any, schema: Schema | None, form: str) -> Any:
    """``inputs``/``instances`` (other than records): an array, or an object of named
    columns or tensors."""
    if schema is not None and not schema.is_tensor_spec():
        if isinstance(value, dict):
            return _typed_columns(value, schema, form)
        if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
            return _typed_frame(_records(value, form), None, schema)
        if schema.has_input_names():
            raise ScoringError(
                f"this model takes named columns {schema.input_names()}; send {form} as an object of columns or a list "
                "of records (or dataframe_split with its columns): rows without names are not matched to columns by position",
                error_code=INVALID_PARAMETER_VALUE,
            )
        return _typed_frame(_rows(value, schema, form), None, schema)
    specs = [s for s in schema if isinstance(s, TensorSpec)] if schema is not None else []
    if isinstance(value, dict):
        if specs and not schema.has_input_names():  # type: ignore[union-attr]
            raise ScoringError(f"{form} is an object of named inputs, but this model takes one unnamed tensor; send an array")
        by_name = {s.name: s for s in specs}
        return {k: _tensor(v, by_name.get(k), f"{form} {_name(k, 40)}") for k, v in value.items()}
    if len(specs) > 1:
        raise ScoringError(f"this model takes the named inputs {[s.name for s in specs]}; send {form} as an object of them")
    return _tensor(value, specs[0] if specs else None, form)


def _rows(value: Any, schema: Schema, form: str) -> Columns:
    """An array for a model of columns: its rows, the columns taken in the signature's order."""
    specs = [s for s in schema if isinstance(s, ColSpec)]
    arr = _array(value, form, dtype=object)
    if arr.ndim == 1 and len(specs) == 1:
        arr = arr.reshape(-1, 1)
    elif arr.ndim == 1 and len(arr) == len(specs):
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] != len(specs):
        raise ScoringError(
            f"{form} must be rows of {len(specs)} values (the columns {[s.name for s in specs]}), got an array of shape {arr.shape}",
            error_code=INVALID_PARAMETER_VALUE,
        )
    return {n: arr[:, i].tolist() for i, n in enumerate(schema.input_names())}


def _typed_columns(columns: dict[str, Any], schema: Schema | None, form: str) -> Any:
    """An object of columns (``{name: [values]}`` or a scalar per column) as a frame."""
    cols = {k: v if isinstance(v, list) else [v] for k, v in columns.items()}
    lengths = {len(v) for v in cols.values()}
    if len(lengths) > 1:
        raise ScoringError(f"the columns of {form} differ in length; every column needs one value per row")
    if schema is None or schema.is_tensor_spec():
        specs = {s.name: s for s in schema or [] if isinstance(s, TensorSpec)}
        return {k: _tensor(v, specs.get(k), f"{form} {_name(k, 40)}") for k, v in cols.items()}
    return _typed_frame(cols, None, schema)


def _array(value: Any, where: str, dtype: Any = None) -> Any:
    import numpy as np

    try:
        return np.asarray(value, dtype=dtype) if dtype is not None and _rectangular(value) else np.asarray(value)
    except (ValueError, TypeError):
        raise ScoringError(f"{where} is not a rectangular array: its rows differ in length or nesting") from None


def _rectangular(value: Any) -> bool:
    """Whether nested lists have one shape (numpy with ``dtype=object`` would accept ragged rows)."""
    if not isinstance(value, list):
        return True
    shapes = {_shape(v) for v in value}
    if len(shapes) > 1:
        raise ValueError("ragged")
    return all(_rectangular(v) for v in value if isinstance(v, list))


def _shape(value: Any) -> tuple[int, ...]:
    if isinstance(value, list):
        return (len(value), *(_shape(value[0]) if value else ()))
    return ()


_INT_KINDS = "iu"


def _tensor(value: Any, spec: TensorSpec | None, where: str) -> Any:
    """A JSON array as the tensor ``spec`` describes (dtype; the shape is checked by the
    signature's enforcement). Numbers convert to a numeric dtype when no value changes."""
    import numpy as np

    arr = _array(value, where)
    if spec is None:
        return arr
    if spec.dtype == "str":
        if arr.dtype.kind != "U" and arr.size:
            raise ScoringError(f"{where} must hold strings (a str tensor), got {_what(arr)}", error_code=INVALID_PARAMETER_VALUE)
        return arr
    if spec.dtype == "bytes":
        if arr.dtype.kind != "U" and arr.size:
            raise ScoringError(f"{where} must hold strings (a bytes tensor, UTF-8 encoded here), got {_what(arr)}",
                               error_code=INVALID_PARAMETER_VALUE)
        return np.char.encode(arr, "utf-8")
    target = np.dtype(spec.dtype)
    if target.kind == "O":
        return np.asarray(value, dtype=object)
    return _numbers(arr, target, where)


def _what(arr: Any) -> str:
    """What an array from a request holds, named by kind (never by value)."""
    kind = arr.dtype.kind
    if kind == "O":
        kinds = {_KIND_OF.get(type(v), "other values") for v in arr.ravel()}
        return kinds.pop() if len(kinds) == 1 else "mixed values (" + ", ".join(sorted(kinds)) + ")"
    return {"U": "strings", "S": "bytes", "b": "booleans", "M": "dates"}.get(kind, "numbers")


_KIND_OF: dict[type, str] = {str: "strings", bool: "booleans", int: "numbers", float: "numbers", type(None): "nulls"}


def _numbers(arr: Any, target: Any, where: str, type_name: str | None = None) -> Any:
    """``arr`` (from JSON or CSV) as ``target``: bool from booleans; an integer type from
    integers in its range or integral floats; a float type from any numbers."""
    import numpy as np

    kind = arr.dtype.kind
    bad = None
    if target.kind == "b":
        bad = None if kind == "b" else "booleans"
    elif target.kind in _INT_KINDS:
        if kind == "f" and arr.size and not bool(np.all(np.isfinite(arr)) and np.all(np.mod(arr, 1) == 0)):
            bad = "whole numbers (not fractions, NaN or infinity)"
        elif kind not in "iuf":
            bad = "whole numbers"
        elif arr.size:
            info = np.iinfo(target)
            if arr.min() < info.min or arr.max() > info.max:
                bad = f"whole numbers from {info.min} to {info.max}"
    elif target.kind == "f":
        bad = None if kind in "biuf" else "numbers"
    elif target.kind == "M":
        return arr.astype(target) if kind == "M" else arr
    if bad is not None:
        raise ScoringError(f"{where} must hold {bad} (its type is {type_name or target.name}), got {_what(arr)}",
                           error_code=INVALID_PARAMETER_VALUE)
    return arr if arr.dtype == target else arr.astype(target)


# ---- columns ---------------------------------------------------------------------------


def _typed_frame(columns: Columns, index: list[Any] | None, schema: Schema | None) -> Any:
    """A frame of ``columns``, each converted to the signature's type for it (by name,
    or by position for an unnamed signature); columns it does not name are left as
    pandas reads them. The frame is built once, from typed arrays."""
    specs: dict[Any, ColSpec] = {}
    if schema is not None and not schema.is_tensor_spec():
        col_specs = [s for s in schema if isinstance(s, ColSpec)]
        specs = {s.name: s for s in col_specs} if schema.has_input_names() else dict(zip(columns, col_specs))
    typed = {name: _column(values, specs[name], name) if name in specs else values for name, values in columns.items()}
    return _pd().DataFrame(typed, index=index, columns=list(columns))


def _column(series: Any, spec: ColSpec, name: object) -> Any:
    """One column's values (a list, or an array from CSV) as the signature's type."""
    import numpy as np

    pd = _pd()
    t = spec.type
    where = f"column {_name(name, 40)}"
    if t == DataType.string:
        return series
    if t == DataType.binary:
        try:
            return [base64.b64decode(v, validate=True) if isinstance(v, str) else v for v in series]
        except (binascii.Error, ValueError):
            raise ScoringError(f"{where} must hold base64 text (binary), and a value is not base64", error_code=INVALID_PARAMETER_VALUE) from None
    if t == DataType.datetime:
        try:
            out = pd.to_datetime(series)
        except (ValueError, TypeError, OverflowError):
            raise ScoringError(f"{where} must hold dates and times (ISO 8601 text)", error_code=INVALID_PARAMETER_VALUE) from None
        return out.as_unit("ns") if hasattr(out, "as_unit") else out
    try:
        values = np.asarray(series)
    except (ValueError, TypeError):
        values = np.asarray(series, dtype=object)
    if values.ndim != 1:
        raise ScoringError(f"{where} must hold one value per row, not arrays", error_code=INVALID_PARAMETER_VALUE)
    if values.dtype.kind == "O":  # JSON null among the numbers, or mixed types
        if all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values):
            values = np.array([np.nan if v is None else v for v in values], dtype="float64")
        elif values.size and all(isinstance(v, bool) for v in values):
            values = values.astype(bool)
    target = np.dtype(NUMPY_DTYPES[t])
    return _numbers(values, target, where, t)


# ---- CSV -------------------------------------------------------------------------------


def _csv(text: str, schema: Schema | None) -> Any:
    pd = _pd()
    dtype = None
    if schema is not None and not schema.is_tensor_spec() and schema.has_input_names():
        # text columns stay text, as the signature says, even where a field looks like a number
        dtype = {s.name: object for s in schema if isinstance(s, ColSpec) and s.type in (DataType.string, DataType.binary)}
    try:
        df = pd.read_csv(io.StringIO(text), dtype=dtype)
    except pd.errors.EmptyDataError:
        raise ScoringError("the CSV body is empty; send a header row and one row per input") from None
    except pd.errors.ParserError as e:
        detail = str(e).splitlines()[0] if str(e) else ""
        where = detail.split(". ", 1)[-1] if "Expected" in detail else "it cannot be split into rows and fields"
        raise ScoringError(f"the body is not CSV with a header row: {bounded(where, 200)}") from None
    except (ValueError, TypeError):
        raise ScoringError("the body is not CSV with a header row") from None
    if schema is not None and schema.is_tensor_spec() and len(schema) == 1:
        spec = next(s for s in schema if isinstance(s, TensorSpec))
        return _tensor(df.to_numpy().tolist(), spec, "the CSV rows") if spec.dtype not in ("str", "bytes", "object") else df
    return _typed_frame({c: df[c].to_numpy() for c in df.columns}, None, schema)


# ---- predictions -----------------------------------------------------------------------


def jsonable(raw: Any) -> Any:
    """Predictions as MLflow writes them: an array as nested lists, a DataFrame (or
    Series) as records; numpy scalars as numbers, bytes as base64 (see :func:`_default`)."""
    import numpy as np

    pd = _pd()
    if isinstance(raw, np.ndarray):
        return raw.tolist() if raw.dtype.kind != "S" else [_default(b) for b in raw.ravel()]
    if isinstance(raw, pd.DataFrame):
        return raw.to_dict(orient="records")
    if isinstance(raw, pd.Series):
        return pd.DataFrame(raw).to_dict(orient="records")
    return raw


def _default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.ndarray):
        return jsonable(o)
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, (bytes, bytearray)):
        return base64.encodebytes(bytes(o)).decode("ascii")
    if isinstance(o, (dt.date, dt.datetime, dt.time)):
        return o.isoformat()
    raise TypeError(f"predictions of type {type(o).__name__} cannot be written as JSON")


def predictions_body(raw: Any) -> bytes:
    """The ``/invocations`` response body: ``{"predictions": ...}``."""
    return json.dumps({"predictions": jsonable(raw)}, default=_default).encode("utf-8")
