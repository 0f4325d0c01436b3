"""Signature enforcement: check (and safely convert) data before it reaches a model.

A wrong column count, a missing column, a wrong shape or a type that cannot be
converted without loss is an :class:`~casstore.exceptions.InvalidInputError` that
says what the model expects and what it was given.
"""

from __future__ import annotations

from typing import Any

from casstore.exceptions import InvalidInputError
from casstore.models.signature import NUMPY_DTYPES, ColSpec, DataType, Schema, TensorSpec, optional_pandas

__all__ = ["enforce_schema"]


def _fail(msg: str) -> InvalidInputError:
    return InvalidInputError(f"model input does not match the model's signature: {msg}")


def enforce_schema(data: Any, schema: Schema) -> Any:
    """Return ``data`` checked against ``schema`` (converted only where no value can change)."""
    if schema.is_tensor_spec():
        return _enforce_tensors(data, schema)
    return _enforce_columns(data, schema)


# ---- tensors -------------------------------------------------------------------------


def _enforce_tensors(data: Any, schema: Schema) -> Any:
    import numpy as np

    specs: list[TensorSpec] = [s for s in schema if isinstance(s, TensorSpec)]
    if schema.has_input_names() and len(specs) > 1:
        if not isinstance(data, dict):
            raise _fail(f"expected a dict of arrays with keys {[s.name for s in specs]}, got {type(data).__name__}")
        missing = [s.name for s in specs if s.name not in data]
        if missing:
            raise _fail(f"missing inputs {missing}; expected {[s.name for s in specs]}")
        return {s.name: _enforce_tensor(data[s.name], s) for s in specs if s.name is not None}
    spec = specs[0]
    if isinstance(data, dict) and spec.name is not None and spec.name in data:
        data = data[spec.name]
    pd = optional_pandas()
    if pd is not None and isinstance(data, pd.DataFrame):
        data = data.to_numpy()
    elif isinstance(data, (list, tuple)):
        data = np.asarray(data)
    if hasattr(data, "toarray") and hasattr(data, "shape") and not isinstance(data, np.ndarray):  # scipy sparse
        _check_shape(data.shape, spec)
        _check_dtype(np.dtype(data.dtype), spec)
        return data
    return _enforce_tensor(data, spec)


def _enforce_tensor(arr: Any, spec: TensorSpec) -> Any:
    import numpy as np

    if not isinstance(arr, np.ndarray):
        raise _fail(f"expected a numpy array{_named(spec)}, got {type(arr).__name__}")
    _check_shape(arr.shape, spec)
    if spec.dtype in _TEXT:
        _check_text(arr, spec)
        return arr
    target = _check_dtype(arr.dtype, spec)
    return arr if arr.dtype == target else arr.astype(target)


#: text tensor dtypes: the numpy kind of any width that holds them, and the Python type
_TEXT: dict[str, tuple[str, type]] = {"str": ("U", str), "bytes": ("S", bytes)}
_NONE = object()


def _check_text(arr: Any, spec: TensorSpec) -> None:
    """A ``str`` tensor takes a unicode array of any width, or an object array holding
    only ``str`` (``bytes`` likewise); both pass unchanged, since no cast is needed."""
    kind, pytype = _TEXT[spec.dtype]
    if arr.dtype.kind == kind:
        return
    if arr.dtype.kind == "O":
        at, bad = next(((i, v) for i, v in enumerate(arr.ravel()) if not isinstance(v, pytype)), (-1, _NONE))
        if bad is _NONE:
            return
        raise _fail(
            f"expected {spec.dtype} values{_named(spec)}, got an object array with a value of type "
            f"{type(bad).__name__} (at flat index {at}); give only {pytype.__name__} values"
        )
    how = "arr.astype(str)" if spec.dtype == "str" else "np.char.encode(arr, 'utf-8')"
    raise _fail(
        f"expected dtype {spec.dtype}{_named(spec)}, got {arr.dtype}; "
        f"convert it with {how} if that is what you mean"
    )


def _named(spec: TensorSpec) -> str:
    return f" for input {spec.name!r}" if spec.name is not None else ""


def _check_shape(shape: tuple[int, ...], spec: TensorSpec) -> None:
    want = spec.shape
    if len(shape) != len(want) or any(w != -1 and w != s for w, s in zip(want, shape)):
        cols = ""
        if len(want) == 2 and len(shape) == 2 and want[1] != -1 and want[1] != shape[1]:
            cols = f" (expected {want[1]} columns, got {shape[1]})"
        raise _fail(f"expected shape {want}{_named(spec)}, got {tuple(shape)}{cols}")


def _check_dtype(dtype: Any, spec: TensorSpec) -> Any:
    import numpy as np

    target = np.dtype(spec.dtype)
    if dtype == target or (target.kind == "O" and dtype.kind in "OUS"):
        return dtype
    if np.can_cast(dtype, target, casting="safe"):
        return target
    raise _fail(
        f"expected dtype {target.name}{_named(spec)}, got {dtype.name}, which cannot be converted to it without loss; "
        f"convert the input with .astype({target.name!r}) if that is what you mean"
    )


# ---- columns -------------------------------------------------------------------------


def _enforce_columns(data: Any, schema: Schema) -> Any:
    import numpy as np

    pd = optional_pandas()
    specs: list[ColSpec] = [s for s in schema if isinstance(s, ColSpec)]
    named = schema.has_input_names()
    if pd is None:
        raise _fail("this model's signature has columns; pandas is needed to check them (pip install pandas)")
    if isinstance(data, pd.Series):
        data = data.to_frame() if len(specs) == 1 else pd.DataFrame([data])
    elif isinstance(data, dict):
        data = pd.DataFrame({k: v if isinstance(v, (list, tuple, np.ndarray)) else [v] for k, v in data.items()})
    elif isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        data = pd.DataFrame(data)
    elif isinstance(data, (list, tuple, np.ndarray)):
        arr = np.asarray(data, dtype=object if isinstance(data, (list, tuple)) else None)
        if arr.ndim == 1:
            arr = arr.reshape(-1, 1) if len(specs) == 1 else arr.reshape(1, -1)
        if arr.ndim != 2:
            raise _fail(f"expected a table of {len(specs)} columns, got an array of shape {arr.shape}")
        if arr.shape[1] != len(specs):
            raise _fail(f"expected {len(specs)} columns {_names(specs)}, got {arr.shape[1]}")
        cols = [s.name for s in specs] if named else list(range(len(specs)))
        data = pd.DataFrame(arr, columns=cols).infer_objects()
    if not isinstance(data, pd.DataFrame):
        raise _fail(f"expected a pandas DataFrame with columns {_names(specs)}, got {type(data).__name__}")
    if named:
        columns = list(data.columns)
        have = {str(c) for c in columns}
        missing = [s.name for s in specs if s.name not in have and s.required]
        if missing:
            raise _fail(f"missing columns {missing}; expected {_names(specs)}, got {data.shape[1]} columns")
        keep = [s.name for s in specs if s.name in have]
        if columns != keep:  # extra, reordered or non-str column names
            data = data.rename(columns={c: str(c) for c in columns})[keep]
    elif data.shape[1] != len(specs):
        raise _fail(f"expected {len(specs)} columns, got {data.shape[1]}")
    out, changed = {}, False
    for i, s in enumerate(specs):
        col = s.name if named else data.columns[i]
        if col not in data.columns:
            continue
        given = data[col]
        out[col] = _enforce_column(given, s, col)
        changed = changed or out[col] is not given
    # a frame whose every column already fits is passed on as it is
    return pd.DataFrame(out, index=data.index) if changed else data


def _names(specs: list[ColSpec]) -> str:
    return str([s.name for s in specs]) if specs and specs[0].name is not None else f"({len(specs)} unnamed)"


_SAFE_KINDS = {
    DataType.boolean: "b",
    DataType.integer: "biu",
    DataType.long: "biu",
    DataType.float: "biuf",
    DataType.double: "biuf",
    DataType.datetime: "M",
}


def _enforce_column(col: Any, spec: ColSpec, name: object) -> Any:
    import numpy as np

    dtype = col.dtype
    if not isinstance(dtype, np.dtype):
        dtype = np.dtype(getattr(dtype, "numpy_dtype", "O"))
    t = spec.type
    if t in (DataType.string, DataType.binary):
        want = str if t == DataType.string else (bytes, bytearray)
        bad = [(i, v) for i, v in enumerate(col.dropna()) if not isinstance(v, want)]
        if bad:
            raise _fail(f"column {name!r} must hold {t} values, got {type(bad[0][1]).__name__} (in row {bad[0][0]} of its values)")
        return col
    target = np.dtype(NUMPY_DTYPES[t])
    if dtype == target:
        return col
    if dtype.kind in _SAFE_KINDS[t] and np.can_cast(dtype, target, casting="safe"):
        return col.astype(target)
    if t == DataType.datetime and dtype.kind == "M":
        return col
    raise _fail(
        f"column {name!r} must be {t} ({target.name}), got {dtype.name}, which cannot be converted to it "
        "without loss; convert the column first if that is what you mean"
    )
