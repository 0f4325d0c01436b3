"""The Open Inference Protocol (KServe V2) over JSON: its types, and the conversions
between its tensors and a model's input and output.

A request's ``inputs`` become the model input by the model's signature: one tensor for
a model of one unnamed tensor, a dict of named tensors, or a frame whose columns are
the inputs for a model of columns. ``BYTES`` tensors carry strings; they reach the model
as ``str`` (as ``bytes``, UTF-8 encoded, where the signature says bytes or binary).
Predictions go back as one output (``predict``) per array, or one per column of a frame.
"""

from __future__ import annotations

import base64
import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from casstore.models.signature import NUMPY_DTYPES, ColSpec, DataType, Schema, TensorSpec
from casstore.serving.payload import INVALID_PARAMETER_VALUE, ScoringError, _name, _numbers, _pd

__all__ = [
    "Datatype",
    "InferenceRequest",
    "InferenceResponse",
    "MetadataModelResponse",
    "MetadataServerResponse",
    "MetadataTensor",
    "RequestInput",
    "RequestOutput",
    "ResponseOutput",
    "InferenceErrorResponse",
    "model_input",
    "response_outputs",
    "schema_tensors",
]

Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"
]
_NUMPY: dict[str, str] = {
    "BOOL": "bool", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
    "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64",
    "FP16": "float16", "FP32": "float32", "FP64": "float64",
}  # fmt: skip
Shape = list[int]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class RequestInput(_Model):
    name: str
    shape: Shape
    datatype: Datatype
    parameters: dict[str, Any] | None = None
    data: list[Any]


class RequestOutput(_Model):
    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(_Model):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(_Model):
    name: str
    shape: Shape
    datatype: Datatype
    parameters: dict[str, Any] | None = None
    data: list[Any]


class InferenceResponse(_Model):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[ResponseOutput]


class MetadataTensor(_Model):
    name: str
    datatype: Datatype
    shape: Shape


class MetadataModelResponse(_Model):
    name: str
    versions: list[str] = []
    platform: str
    inputs: list[MetadataTensor] = []
    outputs: list[MetadataTensor] = []


class MetadataServerResponse(_Model):
    name: str
    version: str
    extensions: list[str] = []


class InferenceErrorResponse(_Model):
    error: str


# ---- request tensors -> model input -----------------------------------------------------


def _flat(data: list[Any]) -> list[Any]:
    """The tensor's elements in row-major order (``data`` may be flat or nested)."""
    if not any(isinstance(v, list) for v in data):
        return data
    out: list[Any] = []
    for v in data:
        out.extend(_flat(v) if isinstance(v, list) else [v])
    return out


def _text_kind(spec: ColSpec | TensorSpec | None) -> str:
    if isinstance(spec, TensorSpec):
        return "bytes" if spec.dtype == "bytes" else "str"
    if isinstance(spec, ColSpec):
        return "bytes" if spec.type == DataType.binary else "str"
    return "str"


def _tensor(inp: RequestInput, spec: ColSpec | TensorSpec | None) -> Any:
    import numpy as np

    where = f"input {_name(inp.name, 40)}"
    if any(d < 0 for d in inp.shape):
        raise ScoringError(f"{where} has shape {inp.shape}; a request's dimensions are sizes (0 or more)")
    values = _flat(inp.data)
    count = math.prod(inp.shape)
    if len(values) != count:
        raise ScoringError(f"{where} has {len(values)} values, but its shape {inp.shape} holds {count}")
    if inp.datatype == "BYTES":
        if not all(isinstance(v, str) for v in values):
            raise ScoringError(f"{where} is BYTES, so its values must be strings")
        if _text_kind(spec) == "bytes":
            return np.array([v.encode("utf-8") for v in values], dtype=object).reshape(inp.shape)
        return np.array(values, dtype=object if isinstance(spec, ColSpec) else str).reshape(inp.shape)
    if not all(isinstance(v, (int, float)) for v in values):
        raise ScoringError(f"{where} is {inp.datatype}, so its values must be " + ("booleans" if inp.datatype == "BOOL" else "numbers"))
    try:
        arr = np.asarray(values)
    except (ValueError, TypeError):  # pragma: no cover - a flat list of numbers always converts
        raise ScoringError(f"{where} cannot be read as {inp.datatype}") from None
    return _numbers(arr, np.dtype(_NUMPY[inp.datatype]), where).reshape(inp.shape)


def model_input(request: InferenceRequest, schema: Schema | None) -> Any:
    """The model input a V2 request stands for, given the model's input schema."""
    names = [i.name for i in request.inputs]
    if len(set(names)) != len(names):
        raise ScoringError("the request names an input twice; give each input once")
    if schema is not None and not schema.is_tensor_spec():
        return _frame(request, schema)
    specs = {s.name: s for s in schema or [] if isinstance(s, TensorSpec)}
    if schema is not None and not schema.has_input_names():
        if len(request.inputs) != 1:
            raise ScoringError(f"this model takes one tensor; the request has {len(request.inputs)} inputs")
        return _tensor(request.inputs[0], next(iter(specs.values())))
    tensors = {i.name: _tensor(i, specs.get(i.name)) for i in request.inputs}
    if schema is None and len(tensors) == 1:
        return next(iter(tensors.values()))
    return tensors


def _frame(request: InferenceRequest, schema: Schema) -> Any:
    """A model of columns: one input of shape [rows, columns] in the signature's column
    order, or one input per column (shape [rows] or [rows, 1])."""
    pd = _pd()
    specs = [s for s in schema if isinstance(s, ColSpec)]
    if len(request.inputs) == 1 and len(request.inputs[0].shape) == 2 and request.inputs[0].shape[1] == len(specs) > 1:
        arr = _tensor(request.inputs[0], None)
        return pd.DataFrame(arr, columns=schema.input_names())
    by_name = {s.name: s for s in specs}
    cols: dict[str, Any] = {}
    for inp in request.inputs:
        if len(inp.shape) > 2 or (len(inp.shape) == 2 and inp.shape[1] != 1):
            raise ScoringError(
                f"input {_name(inp.name, 40)} has shape {inp.shape}; for this model of columns, send each column "
                "as an input of shape [rows] (or [rows, 1])",
                error_code=INVALID_PARAMETER_VALUE,
            )
        cols[inp.name] = _tensor(inp, by_name.get(inp.name)).reshape(-1)
    if len({len(c) for c in cols.values()}) > 1:
        raise ScoringError("the inputs differ in length; every column needs one value per row")
    return pd.DataFrame(cols)


# ---- predictions -> response outputs --------------------------------------------------


def _datatype(dtype: Any) -> str:
    kind = dtype.kind
    if kind == "b":
        return "BOOL"
    if kind in "iuf":
        return {"i": "INT", "u": "UINT", "f": "FP"}[kind] + str(dtype.itemsize * 8)
    return "BYTES"


def _text(v: Any) -> str:
    if isinstance(v, (bytes, bytearray)):
        try:
            return bytes(v).decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(bytes(v)).decode("ascii")
    return str(v)


def _output(name: str, values: Any) -> ResponseOutput:
    import numpy as np

    arr = np.asarray(values)
    datatype = _datatype(arr.dtype)
    flat = arr.ravel()
    data = [_text(v) for v in flat] if datatype == "BYTES" else flat.tolist()
    return ResponseOutput(name=name, shape=list(arr.shape), datatype=datatype, data=data)  # type: ignore[arg-type]


def response_outputs(raw: Any) -> list[ResponseOutput]:
    """Predictions as V2 outputs: ``predict`` for an array, one per column of a frame,
    one per key of a dict."""
    pd = _pd()
    if isinstance(raw, pd.DataFrame):
        return [_output(str(c), raw[c].to_numpy()) for c in raw.columns]
    if isinstance(raw, pd.Series):
        return [_output(str(raw.name) if raw.name is not None else "predict", raw.to_numpy())]
    if isinstance(raw, dict):
        return [_output(str(k), v) for k, v in raw.items()]
    return [_output("predict", raw)]


def schema_tensors(schema: Schema | None, default_name: str) -> list[MetadataTensor]:
    """A schema as V2 metadata tensors (``-1`` for a dimension of any size)."""
    import numpy as np

    if schema is None:
        return []
    out = []
    for i, s in enumerate(schema):
        name = s.name if s.name is not None else (default_name if len(schema) == 1 else f"{default_name}-{i}")
        if isinstance(s, TensorSpec):
            dt = "BYTES" if s.dtype in ("str", "bytes", "object") else _datatype(np.dtype(s.dtype))
            out.append(MetadataTensor(name=name, datatype=dt, shape=list(s.shape)))  # type: ignore[arg-type]
        else:
            numpy = NUMPY_DTYPES[s.type]
            dt = "BYTES" if numpy == "object" or s.type == DataType.datetime else _datatype(np.dtype(numpy))
            out.append(MetadataTensor(name=name, datatype=dt, shape=[-1]))  # type: ignore[arg-type]
    return out
