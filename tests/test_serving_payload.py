"""The scoring server's request parser and response writer, in process: every request
form typed by the signature, what is refused and how it is said."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from casstore.models.signature import ColSpec, Schema, TensorSpec
from casstore.serving.payload import MAX_MESSAGE, ScoringError, bounded, media_type, parse_request, predictions_body

J = "application/json"
FLOATS = Schema([TensorSpec("float64", (-1, 2))])
INTS = Schema([TensorSpec("int8", (-1,))])
NAMED = Schema([TensorSpec("float32", (-1, 2), "a"), TensorSpec("int64", (-1,), "b")])
UNNAMED_COLS = Schema([ColSpec("double"), ColSpec("long")])
TYPED = Schema([ColSpec("binary", "blob"), ColSpec("datetime", "when"), ColSpec("boolean", "flag"), ColSpec("string", "s")])


def parse(doc: Any, schema: Schema | None, ctype: str = J) -> Any:
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return parse_request(body, ctype, schema)


def refused(doc: Any, schema: Schema | None, ctype: str = J) -> ScoringError:
    with pytest.raises(ScoringError) as e:
        parse(doc, schema, ctype)
    assert len(e.value.message) <= MAX_MESSAGE
    return e.value


def test_a_tensor_takes_numbers_that_fit_its_dtype() -> None:
    arr = parse({"inputs": [[1, 2.5], [3, 4]]}, FLOATS).data
    assert arr.dtype == np.float64 and arr.tolist() == [[1.0, 2.5], [3.0, 4.0]]
    assert parse({"instances": [1.0, 2, -128]}, INTS).data.dtype == np.int8
    assert parse({"inputs": [[True, False]]}, FLOATS).data.tolist() == [[1.0, 0.0]]


@pytest.mark.parametrize("doc, schema, says", [
    ({"inputs": [[1, 2], [3]]}, FLOATS, "not a rectangular array"),
    ({"inputs": [["SECRET", 2]]}, FLOATS, "must hold numbers (its type is float64), got strings"),
    ({"inputs": [[None, 2]]}, FLOATS, "got mixed values (nulls, numbers)"),
    ({"inputs": [1.5]}, INTS, "must hold whole numbers (not fractions"),
    ({"inputs": [300]}, INTS, "whole numbers from -128 to 127"),
    ({"inputs": [[1, 2]]}, NAMED, "takes the named inputs ['a', 'b']"),
    ({"inputs": {"a": [[1, 2]]}}, FLOATS, "takes one unnamed tensor"),
])
def test_a_tensor_refuses_what_does_not_fit_and_says_which(doc: Any, schema: Schema, says: str) -> None:
    err = refused(doc, schema)
    assert err.status == 400 and says in err.message and "SECRET" not in err.message


def test_named_tensors_come_as_an_object_of_arrays() -> None:
    data = parse({"inputs": {"a": [[1, 2]], "b": [7]}}, NAMED).data
    assert data["a"].dtype == np.float32 and data["b"].dtype == np.int64
    data = parse({"instances": [{"a": [1, 2], "b": 7}, {"a": [3, 4], "b": 8}]}, NAMED).data
    assert data["a"].tolist() == [[1.0, 2.0], [3.0, 4.0]] and data["b"].tolist() == [7, 8]


def test_text_tensors_stay_str_and_bytes_tensors_are_utf8_encoded() -> None:
    assert parse({"inputs": ["ü", "b"]}, Schema([TensorSpec("str", (-1,))])).data.tolist() == ["ü", "b"]
    assert parse({"inputs": ["ü"]}, Schema([TensorSpec("bytes", (-1,))])).data.tolist() == ["ü".encode()]
    assert "must hold strings" in refused({"inputs": [1]}, Schema([TensorSpec("str", (-1,))])).message


def test_an_unnamed_column_signature_takes_rows_by_position() -> None:
    df = parse({"inputs": [[1.5, 2], [3, 4]]}, UNNAMED_COLS).data
    assert list(df.dtypes) == [np.float64, np.int64] and df.iloc[1].tolist() == [3.0, 4.0]
    assert "rows of 2 values" in refused({"inputs": [[1, 2, 3]]}, UNNAMED_COLS).message


def test_columns_are_typed_by_the_signature() -> None:
    blob = base64.b64encode(b"\x00\xffdata").decode()
    df = parse({"dataframe_records": [{"blob": blob, "when": "2024-05-01T10:00:00", "flag": True, "s": "x"}]}, TYPED).data
    assert df["blob"][0] == b"\x00\xffdata" and df["when"].dtype == "datetime64[ns]" and df["flag"].dtype == bool
    assert "not base64" in refused({"dataframe_records": [{"blob": "SECRET!!", "when": "2024", "flag": True, "s": "x"}]}, TYPED).message
    assert "dates and times" in refused({"dataframe_records": [{"blob": blob, "when": "SECRET", "flag": True, "s": "x"}]}, TYPED).message
    assert "column 'flag' must hold booleans" in refused({"dataframe_records": [{"blob": blob, "when": "2024", "flag": 1, "s": "x"}]}, TYPED).message


def test_csv_text_columns_stay_text() -> None:
    df = parse(b"s,flag,blob,when\n007,true,AAE=,2024-01-01\n", TYPED, "text/csv").data
    assert df["s"][0] == "007" and df["blob"][0] == b"\x00\x01"
    assert "header row" in refused(b"", TYPED, "text/csv").message or "empty" in refused(b"", TYPED, "text/csv").message
    assert "Expected 2 fields in line 3, saw 3" in refused(b"a,b\n1,2\n1,2,3\n", None, "text/csv").message


def test_without_a_signature_arrays_and_frames_pass_as_sent() -> None:
    assert parse({"inputs": [[1, 2]]}, None).data.tolist() == [[1, 2]]
    assert list(parse({"dataframe_split": {"columns": ["x"], "data": [[1]]}}, None).data.columns) == ["x"]
    assert set(parse({"inputs": {"a": [1], "b": ["t"]}}, None).data) == {"a", "b"}


@pytest.mark.parametrize("ctype, mime", [("application/json", J), ("Application/JSON; charset=UTF-8", J),
                                         ("text/csv;charset=utf8", "text/csv")])
def test_media_types_are_read_case_insensitively(ctype: str, mime: str) -> None:
    assert media_type(ctype) == mime


@pytest.mark.parametrize("ctype", [None, "", "text/html", "application/json; charset=utf-16", "text/csv; header=present"])
def test_other_media_types_are_415(ctype: str | None) -> None:
    with pytest.raises(ScoringError) as e:
        media_type(ctype)
    assert e.value.status == 415


def test_predictions_are_written_as_mlflow_writes_them() -> None:
    assert json.loads(predictions_body(np.array([1, 2]))) == {"predictions": [1, 2]}
    assert json.loads(predictions_body(pd.DataFrame({"a": [1], "b": ["x"]}))) == {"predictions": [{"a": 1, "b": "x"}]}
    assert json.loads(predictions_body(pd.Series([0.5], name="p"))) == {"predictions": [{"p": 0.5}]}
    assert json.loads(predictions_body(np.array([b"ab"]))) == {"predictions": ["YWI=\n"]}
    assert json.loads(predictions_body({"k": np.float32(1.5)})) == {"predictions": {"k": 1.5}}


def test_messages_are_bounded() -> None:
    assert len(bounded("x" * 5000)) == MAX_MESSAGE and bounded("short") == "short"
