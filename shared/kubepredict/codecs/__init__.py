"""Wire formats: one module per format, each turning a request body into a Table and a result into a response.

Every codec module has ``decode(body, model) -> Table`` and ``encode(model, result, body=None) -> dict``:

- ``native``: ``POST /function/predict`` online bodies (``instances``, ``dataframe_split``, ``dataframe_records``,
  ``inputs``) → ``{model_id, predictions, probabilities, classes}``;
- ``v2``: Open Inference Protocol tensors → ``{model_name, model_version, outputs}``;
- ``kserve_v1``: ``{"instances": [...]}`` → ``{"predictions": [...]}``;
- ``mlflow``: MLflow scoring-server bodies and ``text/csv`` → ``{"predictions": [...]}``.

``decode_any`` reads whichever of these a plain dict is (stream messages carry no route to tell).
"""

from __future__ import annotations

from . import kserve_v1, mlflow, native, v2
from .base import bad, check_numbers
from .table import Table

CODECS = {"native": native, "v2": v2, "kserve_v1": kserve_v1, "mlflow": mlflow}


def detect(body) -> str:
    """The name of the codec that reads ``body``: ``v2`` for tensor inputs, ``native`` for row bodies."""
    if v2.is_v2(body):
        return "v2"
    if isinstance(body, dict) and native.is_online(body):
        return "native"
    if isinstance(body, dict) and body and not any(isinstance(v, (dict, list)) for v in body.values()):
        return "record"
    raise bad(
        "a scoring body needs 'inputs' (V2 tensors), 'instances', 'dataframe_split', 'dataframe_records', "
        "or is one {column: value} object"
    )


def decode_any(body: dict, model) -> Table:
    """Rows to score from a body in any known format; keys besides the format's own are ignored."""
    kind = detect(body)
    if kind == "v2":
        return v2.decode(body, model)
    if kind == "native":
        return native.decode(body, model, strict=False)
    return check_numbers(Table.from_records([body]), model, "the record")


__all__ = ["CODECS", "Table", "decode_any", "detect", "kserve_v1", "mlflow", "native", "v2"]
