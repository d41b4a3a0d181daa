"""Pure logic of stream scoring: request records in, one answer or one rejection per record out (no Kafka).

A micro-batch is scored with one ``serving.score`` call per model: the rows of every record that names
the same model are concatenated into one Table, scored once, and the results split back per record.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from .. import ml
from ..codecs import decode_any
from ..codecs.base import loads
from ..codecs.table import Table
from ..errors import BackendUnavailable, InvalidInput, KubepredictError, PayloadTooLarge
from ..ids import iso, utcnow
from .messages import Delivery, idempotency_key

logger = logging.getLogger(__name__)

ANSWER_TYPE = "kubepredict.prediction"
ANSWER_SOURCE = "/kubepredict/stream"


@dataclass
class Record:
    """One consumed request: its id and model reference, then its rows, then its answer or its error."""

    delivery: Delivery
    request_id: str
    ref: str | None = None
    version: Any = None
    data: dict | None = None
    table: Table | None = None
    error: KubepredictError | None = None
    answer: dict | None = field(default=None, repr=False)

    @property
    def rows(self) -> Table:
        """The decoded rows: set by ``group`` on the records it accepts, which are all that get scored."""
        if self.table is None:
            raise RuntimeError(f"record {self.request_id} was not grouped: it has no rows")
        return self.table


def parse(delivery: Delivery) -> Record:
    """A CloudEvent (structured JSON, or binary mode with ``ce_*`` headers) whose data names a model and rows.

    Never raises: a bad record comes back with ``error`` set (it will be dead-lettered).
    """
    event_id = delivery.header("ce_id") or delivery.header("ce-id")
    rec = Record(delivery, idempotency_key(delivery, event_id))
    try:
        doc = loads(delivery.value or b"", "the record")
        if isinstance(doc, dict) and "specversion" in doc:
            if doc.get("id") not in (None, ""):
                rec.request_id = str(doc["id"])
            data = doc.get("data")
            if data is None and "data_base64" in doc:
                try:
                    raw = base64.b64decode(doc["data_base64"])
                except (ValueError, TypeError):
                    raise InvalidInput("data_base64 is not base64", code="invalid_json") from None
                data = loads(raw, "the event's data_base64")
            if isinstance(data, str):
                data = loads(data, "the event's data (a string)")
            doc = data
    except InvalidInput as exc:
        rec.error = exc
        return rec
    if not isinstance(doc, dict):
        rec.error = InvalidInput("the event's data must be a JSON object with a model and rows", code="invalid_request")
        return rec
    ref = doc.get("model", doc.get("model_id"))
    if not isinstance(ref, str) or not ref:
        rec.error = InvalidInput(
            'name the model: "model" (id, name or name/versions/N) or "model_id"', code="invalid_model"
        )
        return rec
    rec.ref, rec.version, rec.data = ref, doc.get("model_version"), doc
    return rec


def first_of_each(records) -> list[Record]:
    """Drop a request id seen earlier in the same micro-batch (a producer's retry): answered once."""
    seen: set[str] = set()
    out = []
    for rec in records:
        if rec.request_id not in seen:
            seen.add(rec.request_id)
            out.append(rec)
    return out


def _decode(data: dict, model) -> Table:
    """The rows of a request as a Table: any wire format the codec layer knows (native, V2, MLflow)."""
    return decode_any(data, model)


class ModelGroup:
    """The records of one micro-batch that name the same model."""

    def __init__(self, model):
        self.model = model
        self.records: list[Record] = []


def group(records: list[Record], resolve, max_rows: int) -> list[ModelGroup]:
    """Resolve each distinct model reference once, decode rows, and group the good records by model.

    ``resolve(ref, version)`` is ``serving.resolve`` bound to the App. A record whose model is unknown
    or not ready, whose rows are malformed or miss a feature, or that has more than ``max_rows`` rows gets
    ``error``. BackendUnavailable (database or object store down) propagates: the batch is retried.
    """
    models: dict[tuple, Any] = {}
    groups: dict[str, ModelGroup] = {}
    for rec in records:
        if rec.error is not None:
            continue
        key = (rec.ref, rec.version)
        try:
            if key not in models:
                try:
                    models[key] = resolve(rec.ref, rec.version)
                except KubepredictError as exc:
                    if isinstance(exc, BackendUnavailable):
                        raise
                    models[key] = exc
            model = models[key]
            if isinstance(model, KubepredictError):
                raise model
            table = _decode(rec.data or {}, model)  # a record without an error has its data
            if table.n_rows == 0:
                raise InvalidInput("no rows to score", code="invalid_instances")
            if table.n_rows > max_rows:
                raise PayloadTooLarge(
                    f"{table.n_rows} rows is more than the limit of {max_rows} per record", details={"limit": max_rows}
                )
            ml.check_columns(table.columns, model.features)
        except BackendUnavailable:
            raise
        except KubepredictError as exc:
            rec.error = exc
            continue
        rec.table = table
        groups.setdefault(model.model_id, ModelGroup(model)).records.append(rec)
    return list(groups.values())


def chunks(records: list[Record], max_rows: int) -> list[list[Record]]:
    """Consecutive runs of records of at most ``max_rows`` rows in all (each record fits alone)."""
    out: list[list[Record]] = []
    current: list[Record] = []
    rows = 0
    for rec in records:
        if current and rows + rec.rows.n_rows > max_rows:
            out.append(current)
            current, rows = [], 0
        current.append(rec)
        rows += rec.rows.n_rows
    if current:
        out.append(current)
    return out


def concat(records: list[Record], features: list[str]) -> Table:
    """The feature columns of several records, one after the other."""
    if len(records) == 1:
        t = records[0].rows
        return Table({f: t.columns[f] for f in features}, t.n_rows)
    columns: dict[str, list] = {f: [] for f in features}
    for rec in records:
        for f in features:
            columns[f].extend(rec.rows.columns[f])
    return Table(columns, sum(r.rows.n_rows for r in records))


def score_group(records: list[Record], model, score) -> None:
    """Score the records together (one call); if that fails on bad values, score each alone to find the culprit.

    ``score(model, table)`` is ``serving.score`` bound to the App. Sets ``answer`` or ``error`` on each.
    """
    try:
        result = score(model, concat(records, model.features))
    except BackendUnavailable:
        raise
    except Exception as exc:  # a record the model cannot score must not hold the partition
        if len(records) == 1:
            if not isinstance(exc, KubepredictError):
                logger.exception("stream scoring: model %s failed on request %s", model.model_id, records[0].request_id)
                exc = KubepredictError(
                    f"the model could not score these rows: {type(exc).__name__}: {exc}", code="scoring_failed"
                )
            records[0].error = exc
            return
        for rec in records:
            score_group([rec], model, score)
        return
    predictions = ml.json_values(result.predictions)
    probabilities = ml.json_values(result.probabilities) if result.probabilities is not None else None
    start = 0
    for rec in records:
        end = start + rec.rows.n_rows
        answer: dict[str, Any] = {
            "request_id": rec.request_id,
            "model_id": model.model_id,
            "model_name": model.name,
            "model_version": model.version,
            "predictions": predictions[start:end],
        }
        if probabilities is not None:
            answer["probabilities"] = probabilities[start:end]
        if result.classes is not None:
            answer["classes"] = result.classes
        rec.answer = answer
        start = end


def now() -> str:
    """The ``time`` of a batch's answers (taken once per batch: formatting it costs more than encoding an answer)."""
    return iso(utcnow())


def answer_event(rec: Record, time: str) -> bytes:
    """The answer as a CloudEvent; its id is derived from the request id, so a copy is recognisable."""
    return json.dumps(
        {
            "specversion": "1.0",
            "id": f"{rec.request_id}/prediction",
            "source": ANSWER_SOURCE,
            "type": ANSWER_TYPE,
            "subject": rec.request_id,
            "time": time,
            "datacontenttype": "application/json",
            "data": rec.answer,
        },
        separators=(",", ":"),
    ).encode()


def error_status(exc: KubepredictError) -> int:
    from ..runtimes.responses import STATUS

    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500
