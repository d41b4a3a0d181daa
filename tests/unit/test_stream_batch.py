"""Stream scoring's pure logic: parsing records, grouping by model, one score call per group, splitting answers."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from kubepredict import ml
from kubepredict.errors import BackendUnavailable, ModelNotFound
from kubepredict.events import stream_batch as sb
from kubepredict.events.messages import Delivery

FEATURES = ["a", "b"]


class Model:
    def __init__(self, model_id="mdl_1", version=1, features=FEATURES):
        self.model_id, self.name, self.version, self.features = model_id, "m", version, features
        self.kinds = {f: "numeric" for f in features}  # what the codecs read (ServedModel.kinds)


def delivery(value, offset=0, headers=()) -> Delivery:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return Delivery("stream", 0, offset, b"k", raw, tuple(headers))


def event(data, event_id="e1") -> dict:
    return {"specversion": "1.0", "id": event_id, "source": "/t", "type": "t", "data": data}


def test_parse_structured_binary_and_base64_modes():
    rec = sb.parse(delivery(event({"model": "iris/versions/2", "instances": [{"a": 1}]})))
    assert (rec.request_id, rec.ref, rec.error) == ("e1", "iris/versions/2", None)
    rec = sb.parse(
        delivery({"model_id": "mdl_x", "model_version": 3, "instances": []}, offset=7, headers=[("ce_id", b"bin-1")])
    )
    assert (rec.request_id, rec.ref, rec.version) == ("bin-1", "mdl_x", 3)
    rec = sb.parse(
        delivery(
            {
                "specversion": "1.0",
                "id": "b64",
                "data_base64": base64.b64encode(json.dumps({"model": "m", "instances": []}).encode()).decode(),
            }
        )
    )
    assert (rec.request_id, rec.ref, rec.error) == ("b64", "m", None)


def test_parse_without_an_id_uses_topic_partition_offset():
    rec = sb.parse(delivery({"model": "m", "instances": [{"a": 1}]}, offset=42))
    assert rec.request_id == "stream-0-42"


@pytest.mark.parametrize(
    "value, code",
    [
        (b"{nope", "invalid_json"),
        ([1, 2], "invalid_request"),
        (event("not json"), "invalid_json"),
        (event({"instances": [{"a": 1}]}), "invalid_model"),
        ({"specversion": "1.0", "id": "x", "data_base64": "%%%"}, "invalid_json"),
    ],
)
def test_parse_rejects_bad_records(value, code):
    assert sb.parse(delivery(value)).error.code == code


def scorer(calls):
    def score(model, table):
        calls.append(table.n_rows)
        a = np.asarray(table.columns["a"], dtype=float)
        if np.isnan(a).any():
            from kubepredict.errors import InvalidInput

            raise InvalidInput("bad", code="invalid_values")
        return ml.ScoreResult(predictions=a * 10, probabilities=np.c_[a / 100, 1 - a / 100], classes=["x", "y"])

    return score


def test_records_of_one_model_are_scored_once_and_split_back():
    m1, m2 = Model("mdl_1"), Model("mdl_2", features=["a"])
    models = {"one": m1, "two": m2}
    records = [
        sb.parse(delivery(event({"model": ref, "instances": rows}, f"r{i}"), offset=i))
        for i, (ref, rows) in enumerate(
            [
                ("one", [{"a": 1, "b": 0}, {"a": 2, "b": 0}]),
                ("two", [{"a": 3}]),
                ("one", [{"a": 4, "b": 0, "extra": "ignored"}]),
            ]
        )
    ]
    records += [
        sb.parse(
            delivery(
                event({"model": "one", "dataframe_split": {"columns": ["b", "a"], "data": [[0, 5], [0, 6]]}}, "r3")
            )
        )
    ]
    groups = sb.group(records, lambda ref, v: models[ref], max_rows=100)
    assert [(g.model.model_id, [r.request_id for r in g.records]) for g in groups] == [
        ("mdl_1", ["r0", "r2", "r3"]),
        ("mdl_2", ["r1"]),
    ]
    calls = []
    for g in groups:
        sb.score_group(g.records, g.model, scorer(calls))
    assert calls == [5, 1], "one call per model"
    by_id = {r.request_id: r.answer for r in records}
    assert by_id["r0"]["predictions"] == [10.0, 20.0] and by_id["r2"]["predictions"] == [40.0]
    assert by_id["r3"]["predictions"] == [50.0, 60.0] and by_id["r1"]["predictions"] == [30.0]
    assert by_id["r0"]["probabilities"] == [[0.01, 0.99], [0.02, 0.98]]
    assert by_id["r1"]["model_id"] == "mdl_2" and by_id["r0"]["model_version"] == 1
    event_out = json.loads(sb.answer_event(records[0], sb.now()))
    assert event_out["subject"] == "r0" and event_out["type"] == "kubepredict.prediction"
    assert event_out["data"]["request_id"] == "r0"


def test_a_bad_value_fails_only_its_record():
    records = [
        sb.parse(delivery(event({"model": "one", "instances": [{"a": a, "b": 0}]}, f"r{i}")))
        for i, a in enumerate([1, None, 3])
    ]
    (g,) = sb.group(records, lambda ref, v: Model(), max_rows=100)
    calls = []
    sb.score_group(g.records, g.model, scorer(calls))
    assert calls == [3, 1, 1, 1]
    assert [r.answer["predictions"] if r.answer else r.error.code for r in records] == [
        [10.0],
        "invalid_values",
        [30.0],
    ]


def test_group_rejects_unknown_models_missing_columns_and_too_many_rows_but_not_backend_outages():
    def resolve(ref, v):
        if ref == "gone":
            raise ModelNotFound("no such model")
        return Model()

    records = [
        sb.parse(delivery(event({"model": ref, "instances": rows}, f"r{i}")))
        for i, (ref, rows) in enumerate(
            [("gone", [{"a": 1, "b": 1}]), ("ok", [{"a": 1}]), ("ok", [{"a": 1, "b": 1}] * 3), ("ok", []), ("ok", [1])]
        )
    ]
    assert sb.group(records, resolve, max_rows=2) == []
    assert [r.error.code for r in records] == [
        "model_not_found",
        "missing_columns",
        "payload_too_large",
        "invalid_instances",
        "invalid_instances",
    ]

    def down(ref, v):
        raise BackendUnavailable("database down")

    with pytest.raises(BackendUnavailable):
        sb.group([sb.parse(delivery(event({"model": "x", "instances": [{"a": 1, "b": 1}]})))], down, 10)


def test_chunks_keep_each_call_under_the_row_limit_and_duplicates_are_dropped():
    records = [
        sb.parse(delivery(event({"model": "m", "instances": [{"a": 1, "b": 1}] * n}, f"r{i}")))
        for i, n in enumerate([3, 3, 4, 1])
    ]
    (g,) = sb.group(records, lambda ref, v: Model(), max_rows=10)
    assert [[r.request_id for r in c] for c in sb.chunks(g.records, 6)] == [["r0", "r1"], ["r2", "r3"]]
    again = sb.parse(delivery(event({"model": "m", "instances": []}, "r0"), offset=9))
    assert [r.request_id for r in sb.first_of_each([*records, again])] == ["r0", "r1", "r2", "r3"]


def test_an_unexpected_model_error_fails_only_its_record():
    records = [
        sb.parse(delivery(event({"model": "m", "instances": [{"a": a, "b": 0}]}, f"r{i}")))
        for i, a in enumerate([1, -1, 3])
    ]
    (g,) = sb.group(records, lambda ref, v: Model(), max_rows=100)

    def score(model, table):
        if -1 in table.columns["a"]:
            raise ZeroDivisionError("boom")
        return ml.ScoreResult(predictions=np.asarray(table.columns["a"]) * 2, probabilities=None, classes=None)

    sb.score_group(g.records, g.model, score)
    assert [r.answer["predictions"] if r.answer else r.error.code for r in records] == [[2], "scoring_failed", [6]]
    assert "probabilities" not in records[0].answer and sb.error_status(records[1].error) == 500


# ---- hostile records: each is dead-lettered with its reason, the batch's good records are answered -----------
@pytest.mark.parametrize(
    "value, code, words",
    [
        (b'{"model": "m", "instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "invalid_json", "depth"),
        (event("[" * 5000 + "]" * 5000), "invalid_json", "the event's data (a string) is not valid JSON"),
        (b'{"model": "m", "instances": [{"a": Infinity, "b": 0}]}', "invalid_json", "the record is not valid JSON"),
        (b'{"model": "m", "instances": [{"a": NaN, "b": 0}]}', "invalid_json", "the record is not valid JSON"),
        (b'{"model": "m", "instances": [{"a": 1e999, "b": 0}]}', "invalid_json", "the record is not valid JSON"),
        (
            {"specversion": "1.0", "id": "x", "data_base64": base64.b64encode(b"[" * 2000 + b"]" * 2000).decode()},
            "invalid_json",
            "data_base64 is not valid JSON",
        ),
    ],
)
def test_parse_refuses_deep_and_non_json_numbers_without_raising(value, code, words):
    rec = sb.parse(delivery(value))
    assert rec.error.code == code and words in rec.error.message


@pytest.mark.parametrize(
    "value", ["inf", "-Infinity", "1e999", "9" * 4000], ids=["inf", "-Infinity", "1e999", "digits"]
)
def test_group_refuses_a_non_finite_value_naming_where(value):
    records = [sb.parse(delivery(event({"model": "one", "instances": [{"a": 1, "b": 0}, {"a": value, "b": 0}]})))]
    assert sb.group(records, lambda ref, v: Model(), max_rows=100) == []
    err = records[0].error
    assert err.code == "invalid_values" and "row 1, column 'a'" in err.message
    assert sb.error_status(err) == 400


class FakeTxProducer:
    def __init__(self):
        self.sent = []

    def begin_transaction(self):
        pass

    def produce(self, topic, value, key, headers):
        self.sent.append((topic, value, dict(headers)))

    def poll(self, timeout):
        pass

    def flush(self, timeout=None):
        return 0

    def send_offsets_to_transaction(self, offsets, meta, timeout):
        self.offsets = offsets

    def commit_transaction(self, timeout):
        self.committed = True


class FakeTxConsumer:
    def consumer_group_metadata(self):
        return None


def test_stream_scorer_dead_letters_hostile_records_and_answers_the_rest(tmp_path):
    """A real model behind the real StreamScorer.process, with fake Kafka clients."""
    from pathlib import Path

    from werkzeug.test import Client

    from kubepredict.bootstrap import bootstrap
    from kubepredict.config import Settings
    from kubepredict.events.stream import StreamScorer
    from kubepredict.runner.worker import run_worker
    from kubepredict.runtimes.gateway import Gateway

    svc = bootstrap(Settings(data_dir=tmp_path))
    client = Client(Gateway(svc))
    iris = (Path(__file__).resolve().parents[2] / "shared" / "kubepredict" / "data" / "iris.csv").read_bytes()
    ds = client.post("/function/upload?name=iris", data=iris, headers={"Content-Type": "text/csv"}).get_json()
    q = client.post(
        "/function/train",
        json={"dataset_id": ds["dataset_id"], "target": "species", "algorithm": "logistic_regression"},
    ).get_json()
    assert run_worker(svc, q["job_id"]) == 0
    row = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    m = q["model_id"]
    values = [
        event({"model": m, "instances": [row]}, "good"),
        b'{"model": "' + m.encode() + b'", "instances": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        event({"model": m, "instances": [row, {**row, "petal_width": "inf"}]}, "inf"),
        event({"model": m, "dataframe_split": {"data": [[1, 2, 3, "9" * 4000]]}}, "digits"),
        b'{"model": "' + m.encode() + b'", "instances": [{"sepal_length": Infinity}]}',
        event(
            {
                "model": m,
                "inputs": [
                    {"name": "sepal_length", "datatype": "BYTES", "shape": [1], "data": ["1e999"]},
                    {"name": "sepal_width", "datatype": "FP64", "shape": [1], "data": [1]},
                    {"name": "petal_length", "datatype": "FP64", "shape": [1], "data": [1]},
                    {"name": "petal_width", "datatype": "FP64", "shape": [1], "data": [1]},
                ],
            },
            "v2",
        ),
    ]
    producer = FakeTxProducer()
    scorer = StreamScorer(svc)
    scorer.process(FakeTxConsumer(), producer, [delivery(v, offset=i) for i, v in enumerate(values)])
    answers = [json.loads(v) for t, v, _ in producer.sent if t == svc.settings.topic_predictions]
    dead = [h for t, _, h in producer.sent if t == svc.settings.topic_dead_letter]
    assert [a["subject"] for a in answers] == ["good"] and answers[0]["data"]["predictions"] == ["setosa"]
    codes = [(h["kubepredict.error.status"], h["kubepredict.error.code"]) for h in dead]
    assert codes == [
        (b"400", b"invalid_json"),
        (b"400", b"invalid_values"),
        (b"400", b"invalid_values"),
        (b"400", b"invalid_json"),
        (b"400", b"invalid_values"),
    ]
    assert b"row 1, column 'petal_width'" in dead[1]["kubepredict.error.message"]
    assert producer.committed and scorer.dead_lettered == 5 and scorer.answered == 1
