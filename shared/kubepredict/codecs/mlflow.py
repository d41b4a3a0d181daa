"""MLflow scoring server bodies (``/invocations``) and its answer ``{"predictions": [...]}``.

JSON: ``dataframe_split`` (columns optional: feature order), ``dataframe_records``, ``instances`` and
``inputs`` (rows, or ``{column: [values]}``), each with optional ``params`` (ignored: sklearn models
take none). ``text/csv``: a header row naming columns, one line per row.
"""

from __future__ import annotations

import csv
import io

from ..errors import InvalidInput
from . import base, native
from .table import Table

KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def decode(body: dict, model) -> Table:
    if not isinstance(body, dict):
        raise base.bad("the request body must be a JSON object with one of " + ", ".join(KEYS))
    given = [k for k in KEYS if k in body]
    unknown = sorted(set(body) - {*KEYS, "params"})
    if len(given) != 1 or unknown:
        raise base.bad(
            f"send exactly one of {', '.join(KEYS)} (and optionally params)"
            + (f"; unknown fields: {', '.join(unknown)}" if unknown else "")
        )
    key = given[0]
    value = body[key]
    if key == "dataframe_split":
        table = native.split(value, model)
    elif isinstance(value, dict):
        table = base.columns(value, key)
    else:
        table = base.rows(value, model, key)
    return base.check_numbers(table, model, key)


def decode_csv(data: bytes, model) -> Table:
    """A CSV with a header row; empty fields are missing values."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"the CSV is not UTF-8: {exc}", code="invalid_csv") from None
    try:
        lines = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise InvalidInput(f"the CSV cannot be read: {exc}", code="invalid_csv") from None
    lines = [r for r in lines if r]
    if len(lines) < 2:
        raise InvalidInput("the CSV needs a header row and at least one data row", code="invalid_csv")
    names = [h.strip() for h in lines[0]]
    if len(set(names)) != len(names) or not all(names):
        raise InvalidInput("the CSV header has empty or duplicate column names", code="invalid_csv")
    for i, row in enumerate(lines[1:], start=2):
        if len(row) != len(names):
            raise InvalidInput(f"CSV line {i} has {len(row)} fields, the header {len(names)}", code="invalid_csv")
    table = Table(
        {n: [row[j] if row[j] != "" else None for row in lines[1:]] for j, n in enumerate(names)}, len(lines) - 1
    )
    return base.check_numbers(table, model, "CSV data")


def encode(model, result, body: dict | None = None) -> dict:
    return {"predictions": base.predictions(result)}
