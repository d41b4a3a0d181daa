"""KServe V1 (TensorFlow-Serving style): ``{"instances": [...]}`` → ``{"predictions": [...]}``.

Instances are lists in feature order or ``{feature: value}`` objects; ``inputs`` is accepted too,
as KServe's own V1 server does.
"""

from __future__ import annotations

from . import base
from .table import Table

KEYS = ("instances", "inputs")


def decode(body: dict, model) -> Table:
    if not isinstance(body, dict):
        raise base.bad("the request body must be a JSON object with 'instances'")
    given = [k for k in KEYS if k in body]
    if len(given) != 1:
        raise base.bad("send exactly one of 'instances' or 'inputs'")
    key = given[0]
    table = base.columns(body[key], key) if isinstance(body[key], dict) else base.rows(body[key], model, key)
    return base.check_numbers(table, model, key)


def encode(model, result, body: dict | None = None) -> dict:
    return {"predictions": base.predictions(result)}


def metadata(model) -> dict:
    return {"name": model.name, "ready": True}
