"""What every codec shares: JSON text in, the 400 it raises, value checks, rows by name or by feature position, outputs.

Every wire body is decoded here: ``loads`` is the one strict JSON reader (no ``NaN``/``Infinity``
literals, no number beyond float range, nesting deeper than 1024 refused — never a RecursionError),
and every codec's Table passes ``check_numbers`` (a numeric feature holding ``"inf"``, ``"1e999"`` or
an integer too large for a float is a 400 naming its row and column).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from itertools import chain
from typing import Any

import numpy as np
import orjson

from ..errors import InvalidInput
from ..ml.scoring import json_values
from .table import Table

SCALARS = (str, int, float, bool, type(None))


def bad(message: str, **details: Any) -> InvalidInput:
    return InvalidInput(message, code="invalid_instances", details=details)


SCALAR_TYPES = frozenset(SCALARS)
_FLOAT_MAX = sys.float_info.max


def loads(raw: bytes | str, what: str = "the request body", code: str = "invalid_json") -> Any:
    """``raw`` as JSON, strictly (see the module docstring); InvalidInput(code) saying why not."""
    try:
        return orjson.loads(raw)
    except (orjson.JSONDecodeError, UnicodeDecodeError, TypeError) as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc}", code=code) from None


def check_numbers(table: Table, model, where: str) -> Table:
    """``table``, once every numeric feature holds only finite numbers (or missing values, or text the
    scorer judges); a 400 naming the first row and column that does not. A column of JSON numbers is
    checked with one ``sum`` at C speed; only columns with text or missing values are walked."""
    kinds = model.kinds
    for name, values in table.columns.items():
        if kinds.get(name) != "numeric":
            continue
        row = _non_finite(values)
        if row is not None:
            value = values[row]
            text = repr(value if not isinstance(value, np.generic) else value.item())
            text = text if len(text) <= 40 else f"{text[:20]}…{text[-8:]} ({len(text)} characters)"
            raise InvalidInput(
                f"{where} row {row}, column {name!r}: {text} is not a finite number",
                code="invalid_values",
                details={"row": row, "column": name, "value": text},
            )
    return table


def _non_finite(values) -> int | None:
    """The index of the first infinite or float-overflowing value, or None."""
    if isinstance(values, np.ndarray) and values.dtype.kind != "O":
        if values.dtype.kind not in "fc":
            return None  # integer and bool arrays always fit a float
        bad = np.isinf(values)
        return int(np.argmax(bad)) if bad.any() else None
    if _finite_sum(values):  # JSON numbers: one C-speed pass (integers add up exactly)
        return None
    present = [v for v in values if v is not None]
    if len(present) < len(values) and _finite_sum(present):  # numbers and missing values
        return None
    for i, v in enumerate(values):  # text, numpy scalars, or a value that is not finite: look at each
        if isinstance(v, str):
            try:
                if math.isinf(float(v)):
                    return i
            except ValueError:
                continue  # not a number at all: the scorer says "should be numeric"
        elif isinstance(v, int) and not isinstance(v, bool):
            if not -_FLOAT_MAX <= v <= _FLOAT_MAX:
                return i
        elif isinstance(v, (float, np.number)) and math.isinf(v):
            return i
    return None


def _finite_sum(values) -> bool:
    try:
        return math.isfinite(sum(values))
    except (TypeError, OverflowError):  # text, missing values, or an integer beyond float range
        return False


def check_scalars(values, where: str) -> None:
    if set(map(type, values)) <= SCALAR_TYPES:  # the common case, at C speed: JSON gives exact types
        return
    for v in values:
        if not isinstance(v, SCALARS):
            raise bad(f"{where} holds a {type(v).__name__}; values must be strings, numbers, booleans or null")


def non_empty_list(value, where: str) -> list:
    if not isinstance(value, list) or not value:
        raise bad(f"{where} must be a non-empty list")
    return value


def rows(items: Sequence, model, where: str) -> Table:
    """A list of rows, each an object (``{column: value}``) or a list in the model's feature order."""
    items = non_empty_list(items, where)
    if set(map(type, items)) == {dict}:
        if not all(items) or not set(map(type, chain.from_iterable(map(dict.values, items)))) <= SCALAR_TYPES:
            for i, r in enumerate(items):  # something is wrong: find the row and say which
                if not r:
                    raise bad(f"{where}[{i}] is an empty object")
                check_scalars(r.values(), f"{where}[{i}]")
        return Table.from_records(items)
    if all(isinstance(r, list) for r in items):
        return positional(items, model, where)
    if not any(isinstance(r, (dict, list)) for r in items) and len(model.features) == 1:
        check_scalars(items, where)  # one feature: a flat list of values is one column
        return Table({model.features[0]: list(items)}, len(items))
    raise bad(
        f'{where} must be a list of objects ({{"column": value}}) or of lists in feature order '
        f"({', '.join(model.features)})"
    )


def positional(items: Sequence[list], model, where: str) -> Table:
    """Rows as lists: value ``j`` is feature ``j``; any other width is a 400."""
    width = len(model.features)
    for i, r in enumerate(items):
        if not isinstance(r, list) or len(r) != width:
            raise bad(
                f"{where}[{i}] must be a list of {width} values in feature order ({', '.join(model.features)})",
                expected=width,
            )
        check_scalars(r, f"{where}[{i}]")
    return Table.from_rows(model.features, items)


def columns(mapping: dict, where: str) -> Table:
    """``{column: [values…]}``, column-major, every list the same length."""
    if not mapping:
        raise bad(f"{where} must name at least one column")
    lengths = set()
    out = {}
    for name, given in mapping.items():
        values = given if isinstance(given, list) else [given]  # a single row written as {column: value}
        check_scalars(values, f"{where}.{name}")
        lengths.add(len(values))
        out[str(name)] = values
    if len(lengths) != 1 or 0 in lengths:
        raise bad(f"every column of {where} must hold the same, non-zero number of values")
    return Table(out, lengths.pop())


def predictions(result) -> list:
    return json_values(result.predictions)


def probabilities(result) -> list | None:
    return None if result.probabilities is None else json_values(result.probabilities)


def v2_datatype(values: np.ndarray) -> str:
    kind = np.asarray(values).dtype.kind
    return {"f": "FP64", "i": "INT64", "u": "UINT64", "b": "BOOL"}.get(kind, "BYTES")
