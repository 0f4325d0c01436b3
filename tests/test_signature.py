"""Signatures: inference from numpy and pandas, MLflow's JSON form, and enforcement."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from casstore.exceptions import CorruptRecordError, InvalidInputError
from casstore.models import ColSpec, ModelSignature, Schema, TensorSpec, infer_signature
from casstore.models.enforce import enforce_schema
from casstore.models.signature import infer_schema


def test_numpy_signature_is_a_tensor_spec_with_free_batch_dimension() -> None:
    sig = infer_signature(np.zeros((10, 4)), np.zeros(10, dtype="int64"))
    assert sig.inputs == Schema([TensorSpec("float64", (-1, 4))])
    assert sig.outputs == Schema([TensorSpec("int64", (-1,))])


def test_signature_dict_is_mlflow_s_mlmodel_form() -> None:
    sig = infer_signature(np.zeros((10, 4)), np.zeros(10, dtype="int64"))
    assert sig.to_dict() == {
        "inputs": '[{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 4]}}]',
        "outputs": '[{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]',
        "params": None,
    }


def test_dataframe_signature_has_named_typed_columns() -> None:
    df = pd.DataFrame({"a": [1.0, 2.0], "b": [1, 2], "c": ["x", "y"], "d": [True, False], "e": np.array([1, 2], dtype="int32")})
    sig = infer_signature(df)
    assert [(c.name, c.type) for c in sig.inputs] == [
        ("a", "double"), ("b", "long"), ("c", "string"), ("d", "boolean"), ("e", "integer")
    ]
    assert json.loads(sig.to_dict()["inputs"])[0] == {"type": "double", "name": "a", "required": True}
    assert sig.outputs is None


def test_signature_round_trips_through_its_dict() -> None:
    df = pd.DataFrame({"x": [1.5], "y": ["a"]})
    sig = infer_signature(df, np.array([[0.1, 0.9]], dtype="float32"))
    assert ModelSignature.from_dict(sig.to_dict()) == sig


def test_dict_of_arrays_gives_named_tensors() -> None:
    schema = infer_schema({"img": np.zeros((2, 8, 8), dtype="uint8"), "meta": np.zeros((2, 3))})
    assert schema.inputs == [TensorSpec("uint8", (-1, 8, 8), "img"), TensorSpec("float64", (-1, 3), "meta")]


def test_mixed_object_column_is_refused_with_its_name() -> None:
    with pytest.raises(InvalidInputError, match="column 'm'"):
        infer_signature(pd.DataFrame({"m": ["a", 1]}))


def test_malformed_schema_json_is_a_corrupt_record() -> None:
    with pytest.raises(CorruptRecordError):
        Schema.from_json('[{"name": "x"}]')
    with pytest.raises(CorruptRecordError):
        Schema.from_json("not json")


def test_schema_refuses_mixed_specs() -> None:
    with pytest.raises(InvalidInputError, match="mix"):
        Schema([ColSpec("double", "a"), TensorSpec("float64", (-1,), "b")])
    with pytest.raises(InvalidInputError, match="unknown column type"):
        ColSpec("float128")


# ---- enforcement -------------------------------------------------------------------------


TENSOR = Schema([TensorSpec("float64", (-1, 4))])
COLUMNS = Schema([ColSpec("double", "a"), ColSpec("long", "b"), ColSpec("string", "c")])


def test_tensor_input_with_wrong_column_count_is_refused() -> None:
    with pytest.raises(InvalidInputError, match=r"expected 4 columns, got 3"):
        enforce_schema(np.zeros((5, 3)), TENSOR)


def test_tensor_input_is_converted_only_when_lossless() -> None:
    out = enforce_schema(np.ones((2, 4), dtype="int32"), TENSOR)
    assert out.dtype == np.float64
    with pytest.raises(InvalidInputError, match="float64.*complex128"):
        enforce_schema(np.ones((2, 4), dtype="complex128"), TENSOR)
    narrow = Schema([TensorSpec("float32", (-1, 4))])
    with pytest.raises(InvalidInputError, match="without loss"):
        enforce_schema(np.ones((2, 4)), narrow)


def test_tensor_input_may_be_a_list_or_dataframe() -> None:
    assert enforce_schema([[1.0, 2.0, 3.0, 4.0]], TENSOR).shape == (1, 4)
    assert enforce_schema(pd.DataFrame(np.zeros((3, 4))), TENSOR).shape == (3, 4)
    with pytest.raises(InvalidInputError, match="shape"):
        enforce_schema(np.zeros(4), TENSOR)


def test_column_input_missing_a_column_names_it() -> None:
    df = pd.DataFrame({"a": [1.0], "c": ["x"]})
    with pytest.raises(InvalidInputError, match=r"missing columns \['b'\]"):
        enforce_schema(df, COLUMNS)


def test_column_input_with_wrong_type_names_the_column() -> None:
    df = pd.DataFrame({"a": [1.0], "b": [1.5], "c": ["x"]})
    with pytest.raises(InvalidInputError, match="column 'b' must be long"):
        enforce_schema(df, COLUMNS)
    df = pd.DataFrame({"a": [1.0], "b": [1], "c": [3]})
    with pytest.raises(InvalidInputError, match="column 'c' must hold string"):
        enforce_schema(df, COLUMNS)


def test_column_input_reorders_drops_extras_and_widens_safely() -> None:
    df = pd.DataFrame({"c": ["x"], "extra": [0], "b": np.array([3], dtype="int8"), "a": np.array([1], dtype="int16")})
    out = enforce_schema(df, COLUMNS)
    assert list(out.columns) == ["a", "b", "c"]
    assert out["a"].dtype == np.float64 and out["b"].dtype == np.int64


def test_column_schema_accepts_a_numpy_table_of_the_right_width() -> None:
    schema = Schema([ColSpec("double", "x"), ColSpec("double", "y")])
    out = enforce_schema(np.array([[1.0, 2.0]]), schema)
    assert list(out.columns) == ["x", "y"]
    with pytest.raises(InvalidInputError, match=r"expected 2 columns \['x', 'y'\], got 3"):
        enforce_schema(np.zeros((1, 3)), schema)


def test_named_tensors_need_every_key() -> None:
    schema = Schema([TensorSpec("float64", (-1, 2), "a"), TensorSpec("float64", (-1,), "b")])
    out = enforce_schema({"a": np.zeros((3, 2)), "b": np.zeros(3)}, schema)
    assert set(out) == {"a", "b"}
    with pytest.raises(InvalidInputError, match=r"missing inputs \['b'\]"):
        enforce_schema({"a": np.zeros((3, 2))}, schema)


# ---- text tensors -----------------------------------------------------------------------


def test_string_and_bytes_arrays_give_str_and_bytes_tensors_of_any_width() -> None:
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    iris = load_iris()
    labels = DecisionTreeClassifier(random_state=0).fit(iris.data, iris.target_names[iris.target]).predict(iris.data)
    sig = infer_signature(iris.data, labels)
    assert sig.outputs == Schema([TensorSpec("str", (-1,))])
    assert infer_schema(np.array(["a", "bb"])).inputs == [TensorSpec("str", (-1,))]
    assert infer_schema(np.array([["a", "b"]], dtype="<U320")).inputs == [TensorSpec("str", (-1, 2))]
    assert infer_schema(np.array([b"a"])).inputs == [TensorSpec("bytes", (-1,))]
    assert TensorSpec(np.dtype("<U7"), (-1,)).dtype == "str"  # type: ignore[arg-type]  # MLflow users pass dtypes
    assert json.loads(sig.to_dict()["outputs"]) == [{"type": "tensor", "tensor-spec": {"dtype": "str", "shape": [-1]}}]
    assert ModelSignature.from_dict(sig.to_dict()) == sig


def test_a_one_dimensional_object_array_gives_an_object_tensor() -> None:
    docs = np.array(["good movie", "bad film"], dtype=object)
    assert infer_schema(docs).inputs == [TensorSpec("object", (-1,))]
    assert infer_schema(np.array([1, "a", None], dtype=object)).inputs == [TensorSpec("object", (-1,))]
    # a list is a column of values, as in MLflow
    assert infer_schema(["a", None]).inputs == [ColSpec("string")]


@pytest.mark.filterwarnings("ignore")  # MLflow's own warnings
@pytest.mark.parametrize("example", [
    np.array(["a", "bb"]), np.array([b"a"]), np.array([["x", "y"]]), np.array(["a", "b"], dtype=object),
    np.array([["a"]], dtype=object),
], ids=["str", "bytes", "str-2d", "object", "object-2d"])
def test_text_array_signatures_are_mlflow_s(example: np.ndarray) -> None:
    import mlflow.models as mlflow_models  # in the test extra
    assert infer_signature(example).to_dict() == mlflow_models.infer_signature(example).to_dict()


def test_a_str_tensor_takes_unicode_arrays_of_any_width_unchanged() -> None:
    schema = Schema([TensorSpec("str", (-1,))])
    for arr in (np.array(["a"]), np.array(["a much longer text than the example"]), np.array(["a", "b"], dtype=object)):
        assert enforce_schema(arr, schema) is arr
    assert enforce_schema(["a", "b"], schema).tolist() == ["a", "b"]
    with pytest.raises(InvalidInputError, match=r"expected dtype str, got int64; convert it with arr.astype\(str\)"):
        enforce_schema(np.array([1, 2]), schema)
    with pytest.raises(InvalidInputError, match=r"expected dtype str, got \|S1"):
        enforce_schema(np.array([b"a"]), schema)
    with pytest.raises(InvalidInputError, match=r"object array with a value of type int \(at flat index 1\)"):
        enforce_schema(np.array(["a", 3], dtype=object), schema)


def test_a_bytes_tensor_takes_byte_string_arrays_of_any_width_unchanged() -> None:
    schema = Schema([TensorSpec("bytes", (-1,))])
    for arr in (np.array([b"a"]), np.array([b"abcdefgh"]), np.array([b"a"], dtype=object)):
        assert enforce_schema(arr, schema) is arr
    with pytest.raises(InvalidInputError, match="expected dtype bytes, got <U1"):
        enforce_schema(np.array(["a"]), schema)


def test_an_object_tensor_passes_a_text_array_unchanged() -> None:
    docs = np.array(["good movie", "bad film"], dtype=object)
    assert enforce_schema(docs, Schema([TensorSpec("object", (-1,))])) is docs
