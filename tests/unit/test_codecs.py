"""Codecs: every wire format decodes to the same Table, bad bodies are a clear InvalidInput, answers keep shape."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import tritonclient.http as triton

from kubepredict.codecs import decode_any, detect, kserve_v1, mlflow, native, v2
from kubepredict.errors import InvalidInput
from kubepredict.ml import ScoreResult

FEATURES = ["a", "b", "c"]
MODEL = SimpleNamespace(
    model_id="mdl_x",
    name="m",
    version=3,
    task="classification",
    algorithm="lr",
    features=FEATURES,
    kinds={"a": "numeric", "b": "numeric", "c": "categorical"},
    classes=["no", "yes"],
    target="y",
    sha256="0",
)
ROWS = [[1.5, 2, "x"], [3.0, None, "y"]]
EXPECTED = {"a": [1.5, 3.0], "b": [2, None], "c": ["x", "y"]}
RECORDS = [dict(zip(FEATURES, r, strict=True)) for r in ROWS]


def cols(table) -> dict:
    return {k: list(table.columns[k]) for k in FEATURES}


@pytest.mark.parametrize(
    "body",
    [
        {"model_id": "m", "instances": RECORDS},
        {"model_id": "m", "instances": ROWS},
        {"model_id": "m", "dataframe_records": RECORDS},
        {"model_id": "m", "dataframe_split": {"columns": FEATURES, "data": ROWS}},
        {"model_id": "m", "dataframe_split": {"data": ROWS}},
        {"model_id": "m", "inputs": RECORDS},
        {"model_id": "m", "inputs": EXPECTED},
    ],
)
def test_native_forms_decode_alike(body):
    table = native.decode(body, MODEL)
    assert table.n_rows == 2 and cols(table) == EXPECTED


def test_native_records_keep_sparse_columns_as_missing():
    table = native.decode({"dataframe_records": [{"a": 1}, {"a": 2, "b": "y"}]}, MODEL)
    assert table.columns == {"a": [1, 2], "b": [None, "y"]}


@pytest.mark.parametrize(
    "body, message",
    [
        ({}, "exactly one"),
        ({"instances": []}, "non-empty"),
        ({"instances": [[1, 2]]}, "3 values in feature order"),
        ({"instances": [[1, 2, 3, 4]]}, "3 values in feature order"),
        ({"instances": [{"a": 1}], "dataframe_records": [{"a": 1}]}, "exactly one"),
        ({"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3]]}}, "ragged"),
        ({"dataframe_split": {"columns": ["a"], "data": []}}, "non-empty"),
        ({"dataframe_split": {"columns": ["a", "a"], "data": [[1, 2]]}}, "duplicate"),
        ({"instances": [{"a": {"nested": 1}}]}, "holds a dict"),
        ({"instances": [{}]}, "empty object"),
        ({"dataframe_records": "rows"}, "non-empty list"),
        ({"instances": [1, 2]}, "list of objects"),
        ({"inputs": {"a": [1, 2], "b": [1]}}, "same, non-zero number"),
    ],
)
def test_native_bad_bodies(body, message):
    with pytest.raises(InvalidInput) as err:
        native.decode(body, MODEL)
    assert err.value.code == "invalid_instances" and message in err.value.message


def test_native_refuses_unknown_fields_and_needs_a_model():
    with pytest.raises(InvalidInput) as err:
        native.decode({"instances": RECORDS, "extra": 1}, MODEL)
    assert err.value.code == "unknown_fields"
    with pytest.raises(InvalidInput) as err:
        native.model_ref({"instances": RECORDS})
    assert err.value.code == "missing_field"
    assert native.model_ref({"model_id": "iris/versions/2"}) == "iris/versions/2"


RESULT = ScoreResult(
    predictions=np.array(["yes", "no"], dtype=object),
    probabilities=np.array([[0.1234567, 0.8765433], [0.9, 0.1]]),
    classes=["no", "yes"],
)


def test_native_answer_shape_is_unchanged():
    assert native.encode(MODEL, RESULT) == {
        "model_id": "mdl_x",
        "predictions": ["yes", "no"],
        "probabilities": [[0.123457, 0.876543], [0.9, 0.1]],
        "classes": ["no", "yes"],
    }


# ---- V2 ------------------------------------------------------------------------------------------
def tensor(name, shape, datatype, data):
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


PER_COLUMN = {
    "inputs": [
        tensor("a", [2], "FP64", [1.5, 3.0]),
        tensor("b", [2, 1], "INT64", [[2], [None]]),
        tensor("c", [2], "BYTES", ["x", "y"]),
    ]
}


@pytest.mark.parametrize(
    "body",
    [
        PER_COLUMN,
        {**PER_COLUMN, "parameters": {"content_type": "pd"}},
        {"inputs": [tensor("input-0", [2, 3], "BYTES", [["1.5", "2", "x"], ["3.0", None, "y"]])]},
        {
            "inputs": [tensor("x", [2, 3], "BYTES", ["1.5", "2", "x", "3.0", None, "y"])],
            "parameters": {"content_type": "np"},
        },
    ],
)
def test_v2_columns_and_matrix(body):
    table = v2.decode(body, MODEL)
    assert table.n_rows == 2
    got = cols(table)
    assert [str(v) if v is not None else None for v in got["b"]] == ["2", None] and got["c"] == ["x", "y"]
    assert [float(v) for v in got["a"]] == [1.5, 3.0]


@pytest.mark.parametrize(
    "body, message",
    [
        ({}, "'inputs' must be a non-empty list"),
        ({"inputs": "x"}, "'inputs' must be a non-empty list"),
        ({"inputs": [tensor("a", [2], "FP64", [1.0, 2.0])]}, "missing inputs: b, c"),
        ({"inputs": [tensor("z", [1], "FP64", [1.0])]}, "'z' is not a feature"),
        ({"inputs": [tensor("m", [1, 2], "FP64", [1.0, 2.0])]}, "takes [rows, 3]"),
        ({"inputs": [tensor("a", [2], "FP64", [1.0])]}, "needs 2 values, data holds 1"),
        ({"inputs": [tensor("a", [1], "FP128", [1.0])]}, "not one of BOOL"),
        ({"inputs": [tensor("a", [1], "FP64", ["1"])]}, "'1' is not a FP64 value"),
        ({"inputs": [tensor("a", [1], "INT32", [1.5])]}, "1.5 is not a INT32 value"),
        ({"inputs": [tensor("a", [1], "BOOL", [1])]}, "1 is not a BOOL value"),
        ({"inputs": [tensor("c", [1], "BYTES", [1])]}, "1 is not a BYTES value"),
        ({"inputs": [tensor("a", [-1], "FP64", [])]}, "non-negative"),
        ({"inputs": [tensor("a", [1, 1, 1], "FP64", [1.0])]}, "shape must be"),
        ({"inputs": [tensor("a", [1, 2], "FP64", [1.0, 2.0])]}, "a column is [rows] or [rows, 1]"),
        ({"inputs": [tensor("a", [1], "FP64", [1.0]), tensor("b", [2], "FP64", [1.0, 2.0])]}, "has 2 rows"),
        ({"inputs": [tensor("a", [1], "FP64", [1.0]), tensor("a", [1], "FP64", [1.0])]}, "given twice"),
        ({"inputs": PER_COLUMN["inputs"], "parameters": {"content_type": "str"}}, "content_type 'str'"),
        ({"inputs": PER_COLUMN["inputs"], "parameters": {"content_type": "np"}}, "one 2-D input"),
        ({"inputs": PER_COLUMN["inputs"], "outputs": [{"name": "logits"}]}, "unknown outputs: logits"),
        ({"inputs": [tensor("a", [1], "FP64", [[[1.0]]])]}, "deeper"),
        ({"inputs": [{"name": "a"}]}, "datatype None"),
    ],
)
def test_v2_bad_bodies(body, message):
    with pytest.raises(InvalidInput) as err:
        v2.decode(body, MODEL)
    assert message in err.value.message


def test_v2_binary_tensors_from_the_real_triton_client():
    """tritonclient's default encoding (binary_data=True) is a JSON header plus raw little-endian tensors."""
    a = triton.InferInput("a", [2], "FP32")
    a.set_data_from_numpy(np.array([1.5, 3.0], dtype=np.float32))
    b = triton.InferInput("b", [2, 1], "INT32")
    b.set_data_from_numpy(np.array([[2], [7]], dtype=np.int32))
    c = triton.InferInput("c", [2], "BYTES")
    c.set_data_from_numpy(np.array(["x", "é"], dtype=np.object_))
    raw, header = triton.InferenceServerClient.generate_request_body([a, b, c], request_id="r1")
    assert header is not None  # binary: the client really sent raw tensors
    body = v2.parse(raw, str(header))
    assert body["id"] == "r1"
    assert cols(v2.decode(body, MODEL)) == {"a": [1.5, 3.0], "b": [2, 7], "c": ["x", "é"]}
    with pytest.raises(InvalidInput, match="runs past the body"):
        v2.parse(raw[:-3], str(header))
    with pytest.raises(InvalidInput, match="belong to no input"):
        v2.parse(raw + b"zz", str(header))
    with pytest.raises(InvalidInput, match="does not fit"):
        v2.parse(raw, str(len(raw) + 1))


def test_v2_answer_and_metadata():
    out = v2.encode(MODEL, RESULT, {"id": "r7", "outputs": [{"name": "predict_proba"}]})
    assert out == {
        "model_name": "m",
        "model_version": "3",
        "id": "r7",
        "outputs": [
            {
                "name": "predict_proba",
                "datatype": "FP64",
                "shape": [2, 2],
                "data": [0.123457, 0.876543, 0.9, 0.1],
                "parameters": {"classes": ["no", "yes"]},
            }
        ],
    }
    assert [o["name"] for o in v2.encode(MODEL, RESULT)["outputs"]] == ["predict", "predict_proba"]
    meta = v2.metadata(MODEL)
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [("a", "FP64"), ("b", "FP64"), ("c", "BYTES")]
    assert meta["outputs"][0] == {"name": "predict", "datatype": "BYTES", "shape": [-1]}
    regression = ScoreResult(predictions=np.array([1.5, np.nan]), probabilities=None, classes=None)
    assert v2.encode(MODEL, regression)["outputs"] == [
        {"name": "predict", "datatype": "FP64", "shape": [2], "data": [1.5, None]}
    ]


# ---- KServe V1, MLflow ---------------------------------------------------------------------------
def test_v1_instances_by_position_or_name():
    assert cols(kserve_v1.decode({"instances": ROWS}, MODEL)) == EXPECTED
    assert cols(kserve_v1.decode({"instances": RECORDS}, MODEL)) == EXPECTED
    assert kserve_v1.encode(MODEL, RESULT) == {"predictions": ["yes", "no"]}
    for body in ({"instances": [[1, 2]]}, {"rows": ROWS}, {"instances": ROWS, "inputs": ROWS}, []):
        with pytest.raises(InvalidInput):
            kserve_v1.decode(body, MODEL)


@pytest.mark.parametrize(
    "body",
    [
        {"dataframe_split": {"columns": FEATURES, "data": ROWS}},
        {"dataframe_split": {"index": [0, 1], "columns": FEATURES, "data": ROWS}, "params": {}},
        {"dataframe_records": RECORDS},
        {"instances": RECORDS},
        {"instances": ROWS},
        {"inputs": EXPECTED},
        {"inputs": ROWS},
    ],
)
def test_mlflow_documented_bodies(body):
    assert cols(mlflow.decode(body, MODEL)) == EXPECTED


def test_mlflow_csv_and_bad_bodies():
    table = mlflow.decode_csv(b"a,b,c\n1.5,2,x\n3.0,,y\n", MODEL)
    assert cols(table) == {"a": ["1.5", "3.0"], "b": ["2", None], "c": ["x", "y"]}
    for data, message in (
        (b"a,b,c\n", "header row and at least one"),
        (b"a,a\n1,2\n", "duplicate"),
        (b"a,b\n1,2,3\n", "line 2 has 3 fields"),
        (b"\xff\xfe,a\n", "not UTF-8"),
    ):
        with pytest.raises(InvalidInput, match=message):
            mlflow.decode_csv(data, MODEL)
    for body in ({"dataframe_split": ROWS}, {"instances": RECORDS, "extra": 1}, {}):
        with pytest.raises(InvalidInput):
            mlflow.decode(body, MODEL)
    assert mlflow.encode(MODEL, RESULT) == {"predictions": ["yes", "no"]}


# ---- stream messages ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body, kind",
    [
        (PER_COLUMN, "v2"),
        ({"model_id": "m", "instances": ROWS, "key": "k1"}, "native"),
        ({"dataframe_split": {"columns": FEATURES, "data": ROWS}, "params": {}}, "native"),
    ],
)
def test_decode_any_detects_the_format(body, kind):
    assert detect(body) == kind
    table = decode_any(body, MODEL)
    assert table.n_rows == 2 and [str(v) for v in table.columns["c"]] == ["x", "y"]


def test_decode_any_reads_one_flat_record_and_refuses_the_rest():
    table = decode_any({"a": 1.0, "b": 2, "c": "x", "model_id": "m"}, MODEL)
    assert table.n_rows == 1 and table.columns["c"] == ["x"]
    for body in ({}, {"inputs": 3, "x": [1]}, [1, 2], {"rows": [[1, 2, 3]]}):
        with pytest.raises(InvalidInput):
            decode_any(body, MODEL)


# ---- non-finite and unrepresentable numbers: one 400 naming the row and column, in every format -------------
HUGE = 10**4000  # what a lenient JSON reader makes of a 4,001-digit integer


def _refused(decode) -> InvalidInput:
    with pytest.raises(InvalidInput) as err:
        decode()
    assert err.value.code == "invalid_values", err.value.message
    return err.value


NON_FINITE = ["inf", "-Infinity", "1e999", " -1E400 ", "9" * 4000, float("inf"), float("-inf"), HUGE, -HUGE]
FORMATS = [
    "native rows",
    "native records",
    "native split",
    "native columns",
    "kserve v1",
    "mlflow records",
    "mlflow split",
    "record",
    "v2 columns",
    "v2 matrix",
]
# a V2 BYTES matrix carries text only (the FP64 matrix is the binary test below)
FORMAT_VALUES = [(f, v) for f in FORMATS for v in NON_FINITE if f != "v2 matrix" or isinstance(v, str)]


@pytest.mark.parametrize("fmt,value", FORMAT_VALUES, ids=[f"{f}-{i}" for i, (f, _) in enumerate(FORMAT_VALUES)])
def test_non_finite_numbers_are_refused_naming_their_position(fmt, value):
    rows = [[1.0, 2, "x"], [3.0, value, "y"]]
    records = [dict(zip(FEATURES, r, strict=True)) for r in rows]
    v2_type = "BYTES" if isinstance(value, str) else "FP64"
    decoders = {
        "native rows": lambda: native.decode({"instances": rows}, MODEL),
        "native records": lambda: native.decode({"dataframe_records": records}, MODEL),
        "native split": lambda: native.decode({"dataframe_split": {"columns": FEATURES, "data": rows}}, MODEL),
        "native columns": lambda: native.decode(
            {"inputs": {f: [r[j] for r in rows] for j, f in enumerate(FEATURES)}}, MODEL
        ),
        "kserve v1": lambda: kserve_v1.decode({"instances": records}, MODEL),
        "mlflow records": lambda: mlflow.decode({"dataframe_records": records}, MODEL),
        "mlflow split": lambda: mlflow.decode({"dataframe_split": {"data": rows}}, MODEL),
        "record": lambda: decode_any(records[1], MODEL),
        "v2 columns": lambda: v2.decode(
            {
                "inputs": [
                    {"name": "a", "datatype": "FP64", "shape": [2], "data": [1.0, 3.0]},
                    {"name": "b", "datatype": v2_type, "shape": [2], "data": ["2" if v2_type == "BYTES" else 2, value]},
                    {"name": "c", "datatype": "BYTES", "shape": [2], "data": ["x", "y"]},
                ]
            },
            MODEL,
        ),
        "v2 matrix": lambda: v2.decode(
            {
                "inputs": [
                    {"name": "x", "datatype": "BYTES", "shape": [2, 3], "data": [[str(v) for v in r] for r in rows]}
                ]
            },
            MODEL,
        ),
    }
    err = _refused(decoders[fmt])
    row = 0 if fmt == "record" else 1
    assert (err.details["row"], err.details["column"]) == (row, "b")
    assert f"row {row}, column 'b'" in err.message and "not a finite number" in err.message
    assert len(err.message) < 200  # a 4,000-digit number is not echoed whole


def test_finite_extremes_missing_values_and_text_pass():
    rows = [[1.7976931348623157e308, -(10**300), "inf"], [None, "nan", "1e999"], ["", 2**70, "x"]]
    table = native.decode({"instances": rows}, MODEL)  # "c" is categorical: "inf" is just a category there
    assert table.n_rows == 3 and table.columns["c"] == ["inf", "1e999", "x"]
    assert native.decode({"instances": [["long", 1, "x"]]}, MODEL).columns["a"] == ["long"]  # the scorer's call


def test_csv_and_binary_v2_non_finite_values_are_refused():
    err = _refused(lambda: mlflow.decode_csv(b"a,b,c\n1,2,x\n3,inf,y\n", MODEL))
    assert err.details == {"row": 1, "column": "b", "value": "'inf'"}
    raw = np.array([[1.0, 2.0, 0.0], [np.inf, 1.0, 0.0]], dtype="<f8").tobytes()
    header = b'{"inputs":[{"name":"x","shape":[2,3],"datatype":"FP64","parameters":{"binary_data_size":48}}]}'
    body = v2.parse(header + raw, str(len(header)))
    err = _refused(
        lambda: v2.decode(body, SimpleNamespace(**{**vars(MODEL), "kinds": dict.fromkeys(FEATURES, "numeric")}))
    )
    assert (err.details["row"], err.details["column"]) == (1, "a")


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 1100 + b"]" * 1100,  # nesting past 1024
        b'{"instances": [[Infinity, 1, "x"]]}',  # not JSON literals
        b'{"instances": [[NaN, 1, "x"]]}',
        b'{"instances": [[1e999, 1, "x"]]}',  # beyond float range
        b'{"instances": [[' + b"9" * 4000 + b', 1, "x"]]}',
        b"{nope",
        '{"a": "\ud800"}'.encode("utf-8", "surrogatepass"),
    ],
)
def test_the_one_json_reader_refuses_what_strict_json_refuses(raw):
    from kubepredict.codecs.base import loads

    with pytest.raises(InvalidInput) as err:
        loads(raw, "the event's data")
    assert err.value.code == "invalid_json" and err.value.message.startswith("the event's data is not valid JSON")
