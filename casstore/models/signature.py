"""Model signatures: what a model takes and returns, in MLflow's JSON form.

A :class:`Schema` is a list of :class:`ColSpec` (named, typed columns, inferred from
pandas) or of :class:`TensorSpec` (dtype and shape, inferred from numpy). A
:class:`ModelSignature` pairs an input and an output schema, and the inference params a
model takes (a :class:`ParamSchema`). ``to_dict`` gives
exactly MLflow's ``MLmodel`` form, so a signature written here is read by MLflow.

>>> import numpy as np
>>> sig = infer_signature(np.zeros((3, 4)), np.zeros(3, dtype="int64"))
>>> sig.inputs
[Tensor('float64', (-1, 4))]
"""

from __future__ import annotations

import builtins
import datetime as _dt
import enum
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from casstore.exceptions import CorruptRecordError, InvalidInputError

__all__ = ["DataType", "ColSpec", "TensorSpec", "Schema", "ParamSpec", "ParamSchema", "ModelSignature",
           "infer_signature", "infer_schema", "infer_param_schema", "enforce_params"]

log = logging.getLogger(__name__)


class DataType(str, enum.Enum):
    """MLflow's column types, an enum as ``mlflow.types.DataType`` is: ``DataType.long``,
    ``DataType["long"]``, iteration, ``.name``, ``.value`` (MLflow's numbers), and the types
    each one holds (``to_numpy()``, ``to_pandas()``, ``to_python()``). A member also equals
    its name (``DataType.long == "long"``), the form a signature's JSON writes."""

    def __new__(cls, value: int, name: str, numpy: str, python: type) -> DataType:
        member = str.__new__(cls, name)
        member._value_ = value
        member._numpy = numpy  # type: ignore[attr-defined]
        member._python = python  # type: ignore[attr-defined]
        return member

    boolean = (1, "boolean", "bool", bool)
    integer = (2, "integer", "int32", int)
    long = (3, "long", "int64", int)
    float = (4, "float", "float32", builtins.float)
    double = (5, "double", "float64", builtins.float)
    string = (6, "string", "str", str)
    binary = (7, "binary", "bytes", bytes)
    datetime = (8, "datetime", "datetime64[ns]", _dt.date)

    def __repr__(self) -> str:
        return self.name  # as MLflow prints it

    def __str__(self) -> str:
        return f"DataType.{self.name}"

    def __format__(self, spec: str) -> str:
        return format(self.name, spec)  # the name in messages: "must be long"

    def __hash__(self) -> int:
        return hash(self.name)

    def to_numpy(self) -> Any:
        """The numpy dtype (MLflow's: ``str`` and ``bytes`` for text)."""
        import numpy as np

        return np.dtype(self._numpy)  # type: ignore[attr-defined]

    def to_pandas(self) -> Any:
        """The pandas dtype (``object`` for text, as MLflow's)."""
        return object if self in (DataType.string, DataType.binary) else self.to_numpy()

    def to_python(self) -> type:
        """The Python type a value of it is (``datetime.date`` for a datetime)."""
        return self._python  # type: ignore[attr-defined, no-any-return]

    @classmethod
    def all_types(cls) -> list[DataType]:
        return list(cls)

    @classmethod
    def from_numpy_type(cls, np_type: Any) -> DataType | None:
        """The type whose ``to_numpy()`` is ``np_type``, ``None`` without one."""
        return next((t for t in cls if t.to_numpy() == np_type), None)


#: the numpy dtype a frame column of each type is held in (text as objects)
NUMPY_DTYPES = {
    "boolean": "bool",
    "integer": "int32",
    "long": "int64",
    "float": "float32",
    "double": "float64",
    "string": "object",
    "binary": "object",
    "datetime": "datetime64[ns]",
}


def _check_type(t: object) -> DataType:
    if isinstance(t, DataType):
        return t
    if isinstance(t, str) and t in DataType.__members__:
        return DataType[t]
    raise InvalidInputError(f"unknown column type {t!r}; expected one of {', '.join(DataType.__members__)}")


@dataclass(frozen=True)
class ColSpec:
    """A column: its MLflow type (a :class:`DataType`; its name, ``"double"``, is taken too), optional name."""

    type: DataType
    name: str | None = None
    required: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", _check_type(getattr(self.type, "name", self.type)))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type.name}
        if self.name is not None:
            d["name"] = self.name
        d["required"] = self.required
        return d

    def __repr__(self) -> str:
        required = "required" if self.required else "optional"  # as MLflow prints it
        return f"{self.name!r}: {self.type} ({required})" if self.name is not None else f"{self.type} ({required})"


@dataclass(frozen=True)
class TensorSpec:
    """A tensor: numpy dtype name and shape, ``-1`` for a dimension of any size.

    Strings of any width are ``"str"`` and byte strings ``"bytes"``, as in MLflow:
    ``TensorSpec("<U12", (-1,))`` has dtype ``"str"``.
    """

    dtype: str
    shape: tuple[int, ...]
    name: str | None = None

    def __post_init__(self) -> None:
        dtype = self.dtype
        try:
            import numpy as np

            dtype = _dtype_name(np.dtype(dtype))
        except ImportError:  # pragma: no cover - numpy comes with every flavor
            dtype = str(dtype)
        except TypeError as e:
            raise InvalidInputError(
                f"TensorSpec dtype {self.dtype!r} is not a numpy dtype: {e}; "
                "give a numpy dtype or its name, such as 'float64', 'str' or 'bytes'"
            ) from e
        shape = tuple(int(s) for s in self.shape)
        if any(s < -1 for s in shape):
            raise InvalidInputError(f"TensorSpec shape {shape} is invalid: dimensions are sizes or -1")
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "shape", shape)

    def to_dict(self) -> dict[str, Any]:
        # MLflow's keys, in its order, the shape a tuple (JSON writes it as a list)
        spec: dict[str, Any] = {"type": "tensor", "tensor-spec": {"dtype": self.dtype, "shape": self.shape}}
        return spec if self.name is None else {"name": self.name, **spec}

    def __repr__(self) -> str:
        head = f"{self.name!r}: " if self.name is not None else ""
        return f"{head}Tensor({self.dtype!r}, {self.shape})"  # as MLflow prints it


def _dtype_name(dtype: Any) -> str:
    """A numpy dtype's name in a signature: its width dropped for strings (``"str"``,
    ``"bytes"``), since a width such as ``str320`` is no dtype numpy can read back."""
    if dtype.kind == "U":
        return "str"
    if dtype.kind == "S":
        return "bytes"
    return str(dtype.name)


Spec = ColSpec | TensorSpec


def _spec_type(spec: Spec) -> Any:
    if isinstance(spec, TensorSpec):
        import numpy as np

        return np.dtype(spec.dtype)
    return spec.type


def _spec_from_dict(d: object) -> Spec:
    if not isinstance(d, dict) or "type" not in d:
        raise CorruptRecordError(f"a schema entry must be an object with a 'type', got {d!r}")
    if d["type"] == "tensor":
        ts = d.get("tensor-spec")
        if not isinstance(ts, dict) or "dtype" not in ts or "shape" not in ts:
            raise CorruptRecordError(f"tensor schema entry lacks its 'tensor-spec' dtype and shape: {d!r}")
        return TensorSpec(ts["dtype"], tuple(ts["shape"]), d.get("name"))
    try:
        return ColSpec(d["type"], d.get("name"), bool(d.get("required", True)))
    except InvalidInputError as e:
        raise CorruptRecordError(f"bad schema entry {d!r}: {e}") from e


class Schema:
    """An ordered list of column specs, or of tensor specs (not a mix)."""

    def __init__(self, inputs: Sequence[Spec]) -> None:
        specs = list(inputs)
        if not specs:
            raise InvalidInputError("a Schema needs at least one ColSpec or TensorSpec")
        kinds = {type(s) for s in specs}
        if not kinds <= {ColSpec, TensorSpec}:
            raise InvalidInputError(f"a Schema holds ColSpec or TensorSpec entries, got {sorted(k.__name__ for k in kinds)}")
        if len(kinds) > 1:
            raise InvalidInputError("a Schema cannot mix ColSpec and TensorSpec entries")
        named = [s.name is not None for s in specs]
        if any(named) and not all(named):
            raise InvalidInputError("either every entry of a Schema has a name or none has")
        names = [s.name for s in specs if s.name is not None]
        if len(set(names)) != len(names):
            raise InvalidInputError(f"duplicate names in Schema: {names}")
        self.inputs: list[Spec] = specs

    def __iter__(self) -> Iterator[Spec]:
        return iter(self.inputs)

    def __len__(self) -> int:
        return len(self.inputs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schema) and self.inputs == other.inputs

    def __hash__(self) -> int:
        return hash(tuple(self.inputs))

    def __repr__(self) -> str:
        return repr(self.inputs)

    def is_tensor_spec(self) -> bool:
        return isinstance(self.inputs[0], TensorSpec)

    def has_input_names(self) -> bool:
        return self.inputs[0].name is not None

    def input_names(self) -> list[str | int]:
        return [s.name if s.name is not None else i for i, s in enumerate(self.inputs)]

    def required_input_names(self) -> list[str | int]:
        return [n for n, s in zip(self.input_names(), self.inputs) if getattr(s, "required", True)]

    def optional_input_names(self) -> list[str | int]:
        return [n for n, s in zip(self.input_names(), self.inputs) if not getattr(s, "required", True)]

    def input_types(self) -> list[Any]:
        """Each entry's type: a column's :class:`DataType`, a tensor's numpy dtype."""
        return [_spec_type(s) for s in self.inputs]

    def input_types_dict(self) -> dict[str, Any]:
        """Names to types; a schema without names is refused."""
        return {str(s.name): _spec_type(s) for s in self._named("input types as a dict")}

    def input_dict(self) -> dict[str, Spec]:
        """Names to their specs; a schema without names is refused."""
        return {str(s.name): s for s in self._named("an input dict")}

    def numpy_types(self) -> list[Any]:
        """Each entry's numpy dtype."""
        import numpy as np

        # MLflow's: text columns are numpy's str and bytes (their frames hold them as objects)
        text = {"string": "str", "binary": "bytes"}
        return [np.dtype(s.dtype if isinstance(s, TensorSpec) else text.get(s.type, NUMPY_DTYPES[s.type]))
                for s in self.inputs]

    def _named(self, what: str) -> list[Spec]:
        if not self.has_input_names():
            raise InvalidInputError(f"cannot get {what} for a schema without names: {self!r}")
        return self.inputs

    def to_dict(self) -> list[dict[str, Any]]:
        return [s.to_dict() for s in self.inputs]

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str | list[Any]) -> Schema:
        try:
            items = json.loads(text) if isinstance(text, str) else text
        except json.JSONDecodeError as e:
            raise CorruptRecordError(f"schema is not valid JSON: {e}") from e
        if not isinstance(items, list):
            raise CorruptRecordError(f"a schema is a JSON list, got {type(items).__name__}")
        try:
            return cls([_spec_from_dict(d) for d in items])
        except InvalidInputError as e:
            raise CorruptRecordError(f"bad schema {text!r}: {e}") from e


# ---- inference params ----------------------------------------------------------

#: a param's value of each type, in Python (what ``predict`` is given)
_PARAM_TYPES: dict[DataType, tuple[type, ...]] = {
    DataType.boolean: (bool,), DataType.integer: (int,), DataType.long: (int,), DataType.float: (float,),
    DataType.double: (float,), DataType.string: (str,), DataType.binary: (bytes,),
}


def _param_value(value: Any, dtype: DataType, where: str) -> Any:
    """``value`` as a param of type ``dtype``, in a built-in Python type, converting only as
    MLflow does (an integer to a long or a floating type, a float to a double, anything
    numpy reads as a date to a datetime); anything else is refused."""
    import numpy as np

    if value is None:
        return None
    if dtype == DataType.datetime:
        try:
            converted = np.datetime64(value).item()
        except (TypeError, ValueError) as e:
            raise InvalidInputError(f"{where}: cannot read {value!r} as a datetime") from e
        if isinstance(converted, int):
            raise InvalidInputError(f"{where}: cannot read {value!r} as a datetime")
        return converted
    if isinstance(value, np.generic):
        value = value.item()
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if dtype == DataType.boolean and isinstance(value, bool):
        return value
    if dtype in (DataType.integer, DataType.long) and is_int:
        return int(value)
    if dtype in (DataType.float, DataType.double) and (is_int or isinstance(value, float)):
        return float(value)
    if dtype in (DataType.string, DataType.binary) and isinstance(value, _PARAM_TYPES[dtype]):
        return value
    raise InvalidInputError(f"{where}: expected a {dtype}, got {type(value).__name__} {value!r}")


class ParamSpec:
    """One inference param a model takes: its ``name``, type, ``default`` and ``shape``
    (``None`` for a scalar, ``(-1,)`` for a list)."""

    def __init__(self, name: str, dtype: DataType | str, default: Any, shape: tuple[int, ...] | list[int] | None = None) -> None:
        self.name = str(name)
        self.dtype = _check_type(dtype)
        self.shape = tuple(shape) if shape is not None else None
        if self.shape not in (None, (-1,)):
            raise InvalidInputError(f"param {self.name!r}: shape must be None or (-1,), got {shape!r}")
        self.default = self.validate(default)

    def validate(self, value: Any) -> Any:
        """``value`` as this param takes it (see ``_param_value``); a mismatch is refused."""
        where = f"param {self.name!r} ({self.dtype}{' list' if self.shape else ''})"
        if self.shape is None:
            return _param_value(value, self.dtype, where)
        if value is None:
            return None
        if not isinstance(value, (list, tuple)) and not (hasattr(value, "ndim") and value.ndim == 1):
            raise InvalidInputError(f"{where}: expected a list (shape (-1,)), got {type(value).__name__}")
        return [_param_value(v, self.dtype, where) for v in value]

    def to_dict(self) -> dict[str, Any]:
        default = self.default
        if self.dtype == DataType.datetime and default is not None:
            default = [v.isoformat() for v in default] if self.shape else default.isoformat()
        # MLflow's keys, in its order (they are written so into the MLmodel file)
        return {"name": self.name, "default": default, "shape": self.shape, "type": self.dtype.name}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ParamSpec) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True, default=str))

    def __repr__(self) -> str:
        shape = f" (shape: {self.shape})" if self.shape is not None else ""
        return f"{self.name!r}: {self.dtype} (default: {self.default}){shape}"


class ParamSchema:
    """The inference params a model takes (MLflow's ``ParamSchema``): a list of ``ParamSpec``."""

    def __init__(self, params: Sequence[ParamSpec]) -> None:
        if not all(isinstance(p, ParamSpec) for p in params):
            raise InvalidInputError("a ParamSchema is a list of ParamSpec")
        names = [p.name for p in params]
        if len(set(names)) != len(names):
            raise InvalidInputError(f"a ParamSchema names each param once, got {names}")
        self.params = list(params)

    def to_dict(self) -> list[dict[str, Any]]:
        return [p.to_dict() for p in self.params]

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str | list[Any]) -> ParamSchema:
        try:
            items = json.loads(text) if isinstance(text, str) else text
            return cls([ParamSpec(d["name"], d.get("type", d.get("dtype")), d.get("default"), d.get("shape"))
                        for d in items])
        except (ValueError, TypeError, KeyError, InvalidInputError) as e:
            raise CorruptRecordError(f"bad params schema {text!r}: {e}") from e

    def validate(self, params: dict[str, Any] | None) -> dict[str, Any]:
        """The params ``predict`` is given: each declared one, as given (converted to its
        type) or its default; undeclared ones are dropped with a warning, as MLflow does."""
        if params is not None and not isinstance(params, dict):
            raise InvalidInputError(f"inference params must be a dict, got {type(params).__name__}")
        given = {str(k): v for k, v in (params or {}).items()}
        declared = {p.name for p in self.params}
        ignored = sorted(set(given) - declared)
        if ignored:
            log.warning("inference params %s are not in the model's signature and are ignored; it takes %s",
                        ignored, sorted(declared))
        return {p.name: p.validate(given[p.name]) if p.name in given else p.default for p in self.params}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ParamSchema) and self.params == other.params

    def __hash__(self) -> int:
        return hash(tuple(self.params))

    def __iter__(self) -> Iterator[ParamSpec]:
        return iter(self.params)

    def __len__(self) -> int:
        return len(self.params)

    def __repr__(self) -> str:
        return repr(self.params)


def enforce_params(params: dict[str, Any] | None, schema: ParamSchema | None) -> dict[str, Any] | None:
    """The params a model's ``predict`` gets: checked against its params schema; without
    one, none (given ones are dropped with a warning, as MLflow drops them)."""
    if schema is not None:
        return schema.validate(params)
    if params:
        log.warning("inference params %s are ignored: the model's signature declares no params "
                    "(give infer_signature(..., params={...}) when logging it)", sorted(map(str, params)))
        return {}
    return params


def infer_param_schema(params: dict[str, Any]) -> ParamSchema:
    """The params schema of example params: each value's type, a list as shape ``(-1,)``,
    the value as the default."""
    import datetime as dt

    import numpy as np

    if not isinstance(params, dict):
        raise InvalidInputError(f"inference params must be a dict, got {type(params).__name__}")
    specs = []
    for name, value in params.items():
        shape: tuple[int, ...] | None = None
        if isinstance(value, (list, np.ndarray)):
            arr = np.asarray(value)
            if arr.ndim != 1:
                raise InvalidInputError(f"param {name!r}: a list param is one-dimensional, got {arr.ndim} dimensions")
            shape, sample = (-1,), arr
        else:
            sample = np.asarray(value)
        if all(isinstance(v, (dt.date, dt.datetime)) for v in (value if shape else [value])):
            dtype = DataType.datetime
        elif isinstance(value, dict) or (not shape and not np.isscalar(value)):
            raise InvalidInputError(f"param {name!r}: expected a scalar or a list, got {type(value).__name__}")
        else:
            dtype = _numpy_type(sample.dtype, sample.ravel() if sample.dtype.kind == "O" else None, f"param {name!r}")
        specs.append(ParamSpec(name, dtype, value.tolist() if isinstance(value, np.ndarray) else value, shape))
    return ParamSchema(specs)


class ModelSignature:
    """A model's input and output schemas, and the inference params it takes (``params``)."""

    def __init__(self, inputs: Schema | None = None, outputs: Schema | None = None, params: ParamSchema | None = None) -> None:
        if inputs is not None and not isinstance(inputs, Schema):
            raise InvalidInputError(f"ModelSignature inputs must be a Schema, got {type(inputs).__name__}")
        if outputs is not None and not isinstance(outputs, Schema):
            raise InvalidInputError(f"ModelSignature outputs must be a Schema, got {type(outputs).__name__}")
        if params is not None and not isinstance(params, ParamSchema):
            raise InvalidInputError(f"ModelSignature params must be a ParamSchema, got {type(params).__name__}")
        if inputs is None and outputs is None:
            raise InvalidInputError("a ModelSignature needs inputs, outputs or both")
        self.inputs = inputs
        self.outputs = outputs
        self.params = params

    def to_dict(self) -> dict[str, str | None]:
        """MLflow's form: each schema as a JSON string."""
        return {
            "inputs": self.inputs.to_json() if self.inputs is not None else None,
            "outputs": self.outputs.to_json() if self.outputs is not None else None,
            "params": self.params.to_json() if self.params is not None else None,
        }

    @classmethod
    def from_dict(cls, d: object) -> ModelSignature:
        if not isinstance(d, dict):
            raise CorruptRecordError(f"a signature is an object with 'inputs' and 'outputs', got {d!r}")
        ins = d.get("inputs")
        outs = d.get("outputs")
        params = d.get("params")
        return cls(Schema.from_json(ins) if ins else None, Schema.from_json(outs) if outs else None,
                   ParamSchema.from_json(params) if params else None)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ModelSignature) and self.inputs == other.inputs and self.outputs == other.outputs
                and self.params == other.params)

    def __hash__(self) -> int:
        return hash((self.inputs, self.outputs, self.params))

    def __repr__(self) -> str:
        return f"inputs: \n  {self.inputs!r}\noutputs: \n  {self.outputs!r}\nparams: \n  {self.params!r}\n"  # MLflow's


# ---- inference ---------------------------------------------------------------


def _numpy_type(dtype: Any, values: Any = None, where: str = "input") -> DataType:
    """MLflow column type for a numpy dtype (object dtype: from the values)."""
    kind, size = dtype.kind, dtype.itemsize
    if kind == "b":
        return DataType.boolean
    if kind == "i":
        return DataType.integer if size <= 4 else DataType.long
    if kind == "u":
        return DataType.integer if size <= 2 else DataType.long
    if kind == "f":
        return DataType.float if size <= 4 else DataType.double
    if kind == "U":
        return DataType.string
    if kind == "S":
        return DataType.binary
    if kind == "M":
        return DataType.datetime
    if kind == "O" and values is not None:
        seen = {type(v) for v in values if v is not None and v == v}
        if seen and all(issubclass(t, str) for t in seen):
            return DataType.string
        if seen and all(issubclass(t, (bytes, bytearray)) for t in seen):
            return DataType.binary
        if seen and all(issubclass(t, bool) for t in seen):
            return DataType.boolean
        raise InvalidInputError(
            f"cannot infer a column type for {where}: its values are of types "
            f"{sorted(t.__name__ for t in seen) or ['(none)']}; give the column one type (str, bytes, bool or a number)"
        )
    raise InvalidInputError(f"cannot infer a column type for {where} of dtype {dtype}")


def optional_pandas() -> Any:
    """The pandas module, or None where it is not installed."""
    try:
        import pandas as pd
    except ImportError:
        return None
    return pd


def _col_type(series: Any, name: str) -> DataType:
    import numpy as np

    dtype = series.dtype
    if not isinstance(dtype, np.dtype):
        # pandas extension dtypes (string, Int64, boolean, ...)
        kind = getattr(dtype, "kind", "O")
        if kind in "biuf":
            return _numpy_type(np.dtype(getattr(dtype, "numpy_dtype", "O")), where=f"column {name!r}")
        if kind == "M":
            return DataType.datetime
        return _numpy_type(np.dtype("O"), series.dropna().to_numpy(dtype=object), f"column {name!r}")
    return _numpy_type(dtype, series.to_numpy() if dtype.kind == "O" else None, f"column {name!r}")


def infer_schema(data: Any) -> Schema:
    """The schema of one example of model input or output."""
    import numpy as np

    pd = optional_pandas()
    if pd is not None and isinstance(data, pd.DataFrame):
        return Schema([ColSpec(_col_type(data[c], str(c)), str(c)) for c in data.columns])
    if pd is not None and isinstance(data, pd.Series):
        name = None if data.name is None else str(data.name)
        return Schema([ColSpec(_col_type(data, name or "series"), name)])
    if isinstance(data, dict):
        if not data:
            raise InvalidInputError("cannot infer a schema from an empty dict")
        if all(isinstance(v, np.ndarray) for v in data.values()):
            return Schema([_tensor_spec(v, str(k)) for k, v in data.items()])
        if pd is not None:
            return infer_schema(pd.DataFrame({k: v if isinstance(v, (list, tuple, np.ndarray)) else [v] for k, v in data.items()}))
    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data) and pd is not None:
        return infer_schema(pd.DataFrame(data))
    if isinstance(data, str):
        return Schema([ColSpec(DataType.string)])
    if hasattr(data, "toarray") and hasattr(data, "dtype") and hasattr(data, "shape"):  # scipy sparse
        return Schema([TensorSpec(_dtype_name(np.dtype(data.dtype)), (-1, *data.shape[1:]))])
    if isinstance(data, (list, tuple, np.ndarray)):
        arr = np.asarray(data)
        if arr.dtype.kind == "O" and arr.ndim == 1 and not isinstance(data, np.ndarray):
            # a list of str, bytes or bools with None among them: one column (MLflow's reading);
            # a 1-D object ndarray stays a tensor and reaches the model as it is
            return Schema([ColSpec(_numpy_type(arr.dtype, arr, "input"))])
        return Schema([_tensor_spec(arr)])
    raise InvalidInputError(
        f"cannot infer a schema from a {type(data).__name__}; "
        "pass a numpy array, a pandas DataFrame or Series, a list, or a dict of arrays"
    )


def _tensor_spec(arr: Any, name: str | None = None) -> TensorSpec:
    if arr.ndim == 0:
        raise InvalidInputError(f"cannot infer a tensor schema from a 0-d array{f' {name!r}' if name else ''}")
    return TensorSpec(_dtype_name(arr.dtype), (-1, *arr.shape[1:]), name)


def infer_signature(model_input: Any = None, model_output: Any = None, params: dict[str, Any] | None = None) -> ModelSignature:
    """Infer a :class:`ModelSignature` from example input and output (numpy or pandas) and
    example inference ``params`` (each value's type, the value as the default)."""
    if model_input is None and model_output is None:
        raise InvalidInputError("infer_signature needs a model input, a model output, or both")
    ins = infer_schema(model_input) if model_input is not None else None
    outs = infer_schema(model_output) if model_output is not None else None
    return ModelSignature(ins, outs, infer_param_schema(params) if params else None)
