"""Kubepredict's own online body for ``POST /function/predict``.

``{"model_id": ref, "instances" | "inputs" | "dataframe_records": [rows…]}`` or
``{"model_id": ref, "dataframe_split": {"columns": [...], "data": [[...]]}}``; a row is an object
or a list in feature order; ``"explain": true`` adds per-row explanations. Answer: ``{"model_id",
"predictions", "probabilities"?, "classes"?, "explanations"?}``.
"""

from __future__ import annotations

from ..errors import InvalidInput
from . import base
from .table import Table

KEYS = ("instances", "dataframe_split", "dataframe_records", "inputs")
ALLOWED = {"model_id", "explain", *KEYS}  # explain: services/explaining.py


def is_online(body: dict) -> bool:
    return any(k in body for k in KEYS)


def model_ref(body: dict) -> str:
    ref = body.get("model_id")
    if ref is None:
        raise InvalidInput("'model_id' is required", code="missing_field", details={"field": "model_id"})
    if not isinstance(ref, str) or not ref.strip() or len(ref) > 200:
        raise InvalidInput(
            "'model_id' must be a model id, a model name, name@alias or name/versions/N",
            code="invalid_field",
            details={"field": "model_id"},
        )
    return ref


def decode(body: dict, model, *, strict: bool = True) -> Table:
    """Rows to score; ``strict`` refuses fields other than ``model_id`` and one of the row keys."""
    if not isinstance(body, dict):
        raise base.bad("the request body must be a JSON object")
    if strict:
        unknown = sorted(set(body) - ALLOWED)
        if unknown:
            raise InvalidInput(
                f"unknown fields: {', '.join(unknown)}",
                code="unknown_fields",
                details={"unknown": unknown, "allowed": sorted(ALLOWED)},
            )
    given = [k for k in KEYS if k in body]
    if len(given) != 1:
        raise base.bad(f"send exactly one of {', '.join(KEYS)}")
    key = given[0]
    if key == "dataframe_split":
        table = split(body[key], model)
    elif key == "inputs" and isinstance(body[key], dict):
        table = base.columns(body[key], key)
    else:
        table = base.rows(body[key], model, key)
    return base.check_numbers(table, model, key)


def split(value, model, where: str = "dataframe_split") -> Table:
    """``{"columns": [...], "data": [[...]]}`` (pandas ``orient="split"``); no columns = feature order."""
    if not isinstance(value, dict) or "data" not in value:
        raise base.bad(f"{where} needs 'columns' and 'data'")
    data = base.non_empty_list(value["data"], f"{where}.data")
    names = value.get("columns")
    if names is None:
        return base.positional(data, model, f"{where}.data")
    if not isinstance(names, list) or not names or not all(isinstance(c, str) for c in names):
        raise base.bad(f"{where}.columns must be a non-empty list of names")
    if len(set(names)) != len(names):
        raise base.bad(f"{where}.columns has duplicate names")
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) != len(names):
            raise base.bad(f"{where}.data[{i}] must be a list of {len(names)} values (ragged row)")
        base.check_scalars(row, f"{where}.data[{i}]")
    return Table.from_rows(names, data)


def encode(model, result, body: dict | None = None) -> dict:
    out = {"model_id": model.model_id, "predictions": base.predictions(result)}
    probabilities = base.probabilities(result)
    if probabilities is not None:
        out["probabilities"] = probabilities
    if result.classes is not None:
        out["classes"] = result.classes
    return out
