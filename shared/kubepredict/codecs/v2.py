"""Open Inference Protocol (KServe V2 / Triton / MLServer) REST bodies.

Request inputs are either one tensor per feature (named like the feature, shape ``[rows]`` or
``[rows, 1]``; ``BYTES`` for categorical columns) or one 2-D tensor ``[rows, features]`` in the
model's feature order. ``parameters.content_type`` ``pd`` forces the first reading, ``np`` the second.
Tensor data may be JSON (flat or nested, row-major) or Triton's binary extension (raw little-endian
bytes after a JSON header of ``Inference-Header-Content-Length`` bytes). Outputs: ``predict`` and, for
classifiers, ``predict_proba`` (``[rows, classes]``, class labels in its ``parameters.classes``).
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from ..errors import InvalidInput
from . import base
from .table import Table

NUMPY = {
    "BOOL": "?",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
DATATYPES = (*NUMPY, "BYTES")
OUTPUTS = ("predict", "predict_proba")
CONTENT_TYPES = (None, "pd", "np")


def bad(message: str) -> InvalidInput:
    return InvalidInput(message, code="invalid_inputs")


# ---- request ---------------------------------------------------------------------------------
def parse(raw: bytes, header_length: str | None = None) -> dict:
    """The request as a dict with every tensor's ``data`` as a list, binary parts decoded."""
    if header_length in (None, ""):
        return _json(raw)
    try:
        n = int(header_length)
    except ValueError:
        raise bad(f"Inference-Header-Content-Length must be a byte count, not {header_length!r}") from None
    if not 0 < n <= len(raw):
        raise bad(f"Inference-Header-Content-Length {n} does not fit a body of {len(raw)} bytes")
    body, rest, offset = _json(raw[:n]), memoryview(raw)[n:], 0
    for tensor in body.get("inputs") or []:
        params = tensor.get("parameters") if isinstance(tensor, dict) else None
        if not isinstance(params, dict) or "binary_data_size" not in params:
            continue
        size = params.pop("binary_data_size")
        if not isinstance(size, int) or size < 0 or offset + size > len(rest):
            raise bad(f"input {tensor.get('name')!r}: binary_data_size {size!r} runs past the body")
        tensor["data"] = _from_binary(bytes(rest[offset : offset + size]), tensor.get("datatype"), tensor.get("name"))
        offset += size
    if offset != len(rest):
        raise bad(f"{len(rest) - offset} bytes after the binary tensors belong to no input")
    return body


def _json(raw: bytes) -> dict:
    if not raw.strip():
        raise bad('the request body is empty; send {"inputs": [...]}')
    body = base.loads(raw, code="invalid_inputs")  # strict JSON, as every other route parses it
    if not isinstance(body, dict):
        raise bad("the request body must be a JSON object with 'inputs'")
    return body


def _from_binary(chunk: bytes, datatype, name) -> list:
    if datatype == "BYTES":
        values, i = [], 0
        while i < len(chunk):
            if i + 4 > len(chunk):
                raise bad(f"input {name!r}: truncated BYTES element")
            (size,) = struct.unpack_from("<I", chunk, i)
            if i + 4 + size > len(chunk):
                raise bad(f"input {name!r}: truncated BYTES element")
            try:
                values.append(chunk[i + 4 : i + 4 + size].decode("utf-8"))
            except UnicodeDecodeError:
                raise bad(f"input {name!r}: BYTES elements must be UTF-8 text") from None
            i += 4 + size
        return values
    if datatype not in NUMPY:
        raise bad(f"input {name!r}: datatype {datatype!r} is not one of {', '.join(DATATYPES)}")
    dtype = np.dtype(NUMPY[datatype])
    if len(chunk) % dtype.itemsize:
        raise bad(f"input {name!r}: {len(chunk)} bytes is not a whole number of {datatype} values")
    return np.frombuffer(chunk, dtype=dtype).tolist()


def decode(body: dict, model) -> Table:
    """One tensor per feature, or one 2-D tensor in feature order (see the module docstring)."""
    if not isinstance(body, dict):
        raise bad("the request body must be a JSON object with 'inputs'")
    params = body.get("parameters") or {}
    if not isinstance(params, dict):
        raise bad("'parameters' must be an object")
    content_type = params.get("content_type")
    if content_type not in CONTENT_TYPES:
        raise bad(f"parameters.content_type {content_type!r} is not supported; use 'pd' or 'np'")
    _requested_outputs(body)
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise bad("'inputs' must be a non-empty list of tensors {name, shape, datatype, data}")
    tensors = [_tensor(t, i) for i, t in enumerate(inputs)]
    features = model.features
    if content_type == "np" or (
        content_type is None and len(tensors) == 1 and tensors[0][0] not in model.kinds and len(tensors[0][1]) == 2
    ):
        return base.check_numbers(_matrix(tensors, model), model, f"input {tensors[0][0]!r}")
    n_rows, columns = None, {}
    for name, shape, values in tensors:
        if name not in model.kinds:
            raise bad(
                f"input {name!r} is not a feature of this model; send one tensor per feature "
                f"({', '.join(features)}) or one 2-D tensor [rows, {len(features)}] in that order"
            )
        if len(shape) == 2 and shape[1] != 1 or len(shape) > 2:
            raise bad(f"input {name!r} has shape {shape}; a column is [rows] or [rows, 1]")
        if name in columns:
            raise bad(f"input {name!r} is given twice")
        if n_rows is not None and shape[0] != n_rows:
            raise bad(f"input {name!r} has {shape[0]} rows, other inputs {n_rows}")
        n_rows = shape[0]
        columns[name] = values
    if not n_rows:
        raise bad("the inputs hold no rows")
    missing = [f for f in features if f not in columns]
    if missing:
        raise InvalidInput(
            f"missing inputs: {', '.join(missing)}", code="missing_columns", details={"missing": missing}
        )
    return base.check_numbers(Table(columns, n_rows), model, "inputs")


def _matrix(tensors, model) -> Table:
    if len(tensors) != 1:
        raise bad(f"content_type 'np' takes one 2-D input [rows, {len(model.features)}], not {len(tensors)} inputs")
    name, shape, values = tensors[0]
    width = len(model.features)
    if len(shape) != 2 or shape[1] != width:
        raise bad(
            f"input {name!r} has shape {shape}; this model takes [rows, {width}] "
            f"in feature order ({', '.join(model.features)})"
        )
    if shape[0] == 0:
        raise bad("the inputs hold no rows")
    return Table({f: values[j::width] for j, f in enumerate(model.features)}, shape[0])


def _tensor(t, i: int) -> tuple[str, list[int], list]:
    if not isinstance(t, dict):
        raise bad(f"inputs[{i}] must be an object {{name, shape, datatype, data}}")
    name, shape, datatype, data = t.get("name"), t.get("shape"), t.get("datatype"), t.get("data")
    if not isinstance(name, str) or not name:
        raise bad(f"inputs[{i}] needs a 'name'")
    if datatype not in DATATYPES:
        raise bad(f"input {name!r}: datatype {datatype!r} is not one of {', '.join(DATATYPES)}")
    if (
        not isinstance(shape, list)
        or not 1 <= len(shape) <= 2
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise bad(f"input {name!r}: shape must be [rows] or [rows, columns] of non-negative integers, not {shape!r}")
    if not isinstance(data, list):
        raise bad(f"input {name!r}: 'data' must be a list")
    flat = _flatten(data, name)
    if len(flat) != math.prod(shape):
        raise bad(f"input {name!r}: shape {shape} needs {math.prod(shape)} values, data holds {len(flat)}")
    _check(flat, datatype, name)
    return name, shape, flat


def _flatten(data: list, name) -> list:
    if list not in set(map(type, data)):
        return data
    flat = []
    for v in data:
        if isinstance(v, list):
            if any(isinstance(w, list) for w in v):
                raise bad(f"input {name!r}: data nests deeper than two dimensions")
            flat.extend(v)
        else:
            flat.append(v)
    return flat


def _is_bool(v) -> bool:
    return v is None or isinstance(v, bool)


def _is_text(v) -> bool:
    return v is None or isinstance(v, str)


def _is_number(v) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def _is_integer(v) -> bool:
    return v is None or (isinstance(v, int) and not isinstance(v, bool))


def _fits(datatype: str):
    if datatype == "BOOL":
        return _is_bool
    if datatype == "BYTES":
        return _is_text
    return _is_number if datatype.startswith("FP") else _is_integer


_TYPES = {
    "BOOL": frozenset({bool, type(None)}),
    "BYTES": frozenset({str, type(None)}),
    "FP": frozenset({int, float, type(None)}),
    "INT": frozenset({int, type(None)}),
}


def _check(values: list, datatype: str, name) -> None:
    allowed = _TYPES.get(datatype, _TYPES["FP"] if datatype.startswith("FP") else _TYPES["INT"])
    if set(map(type, values)) <= allowed:  # JSON values have exact types: checked at C speed
        return
    fits = _fits(datatype)
    if not all(map(fits, values)):
        example = next(v for v in values if not fits(v))
        raise bad(f"input {name!r}: {example!r} is not a {datatype} value")


def _requested_outputs(body: dict) -> list[str] | None:
    outputs = body.get("outputs")
    if outputs is None:
        return None
    if not isinstance(outputs, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs
    ):
        raise bad("'outputs' must be a list of {name}")
    names = [o["name"] for o in outputs]
    unknown = [n for n in names if n not in OUTPUTS]
    if unknown:
        raise bad(f"unknown outputs: {', '.join(unknown)}; this model has {', '.join(OUTPUTS)}")
    return names


# ---- response --------------------------------------------------------------------------------
def encode(model, result, body: dict | None = None) -> dict:
    predictions = base.predictions(result)
    outputs: list[dict[str, Any]] = [
        {
            "name": "predict",
            "datatype": base.v2_datatype(result.predictions),
            "shape": [len(predictions)],
            "data": predictions,
        }
    ]
    probabilities = base.probabilities(result)
    if probabilities is not None:
        k = len(probabilities[0]) if probabilities else len(result.classes or ())
        outputs.append(
            {
                "name": "predict_proba",
                "datatype": "FP64",
                "shape": [len(probabilities), k],
                "data": [p for row in probabilities for p in row],
                "parameters": {"classes": result.classes},
            }
        )
    wanted = _requested_outputs(body or {})
    if wanted is not None:
        outputs = [o for o in outputs if o["name"] in wanted]
    out = {"model_name": model.name, "model_version": str(model.version), "outputs": outputs}
    request_id = (body or {}).get("id")
    if isinstance(request_id, str) and request_id:
        out["id"] = request_id
    return out


def metadata(model) -> dict:
    """Model metadata: one input per feature (FP64 numeric, BYTES categorical) and the outputs."""
    inputs = [
        {"name": f, "datatype": "FP64" if model.kinds.get(f) == "numeric" else "BYTES", "shape": [-1]}
        for f in model.features
    ]
    outputs: list[dict[str, Any]] = [{"name": "predict", "datatype": _predict_datatype(model), "shape": [-1]}]
    if model.task == "classification" and model.classes:
        outputs.append(
            {
                "name": "predict_proba",
                "datatype": "FP64",
                "shape": [-1, len(model.classes)],
                "parameters": {"classes": model.classes},
            }
        )
    return {
        "name": model.name,
        "versions": [str(model.version)],
        "platform": "sklearn",
        "inputs": inputs,
        "outputs": outputs,
        "parameters": {"model_id": model.model_id, "task": model.task, "algorithm": model.algorithm},
    }


def _predict_datatype(model) -> str:
    if model.task == "regression":
        return "FP64"
    if model.task == "classification" and model.classes:
        return base.v2_datatype(np.asarray(model.classes))
    return "INT64"


def is_v2(body) -> bool:
    """A V2 inference request: ``inputs`` is a list of tensor objects."""
    inputs = body.get("inputs") if isinstance(body, dict) else None
    return (
        isinstance(inputs, list)
        and bool(inputs)
        and all(isinstance(t, dict) and "datatype" in t and "name" in t for t in inputs)
    )
