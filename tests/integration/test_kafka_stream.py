"""Stream scoring on the real broker: CloudEvents on the stream topic, answers on the predictions topic."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid

import httpx
import numpy as np
import pandas as pd
import pytest

from kubepredict.bootstrap import bootstrap
from kubepredict.codecs.table import Table
from kubepredict.config import Settings
from kubepredict.services import serving
from tests.gateway_process import REPO, GatewayProcess

from .kafka_helpers import IRIS, TopicReader, kafka_env, produce, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def train(http: httpx.Client, dataset_id: str, name: str, **body) -> dict:
    r = http.post("/function/train", json={"dataset_id": dataset_id, "name": name, **body})
    assert r.status_code in (200, 201, 202), r.text
    model_id = r.json()["model_id"]
    return wait_for(
        lambda: (m := http.get(f"/function/train/{model_id}").json())["status"] == "ready" and m,
        240,
        f"model {name} to be ready",
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory, kafka_broker):
    """A gateway with Kafka (so the embedded stream scorer runs) and two ready models."""
    prefix = kafka_broker.topic_prefix("stream")
    env = kafka_env(
        kafka_broker.bootstrap,
        prefix,
        KUBEPREDICT_MAX_ONLINE_ROWS="1000",
        KUBEPREDICT_KAFKA_OPTIONS="session.timeout.ms=6000,heartbeat.interval.ms=1000",
    )
    gw = GatewayProcess(tmp_path_factory.mktemp("stream-gw"), env=env).start()
    http = httpx.Client(base_url=gw.url, timeout=60)
    r = http.post(
        "/function/upload", params={"name": "iris"}, content=IRIS.read_bytes(), headers={"Content-Type": "text/csv"}
    )
    assert r.status_code == 201, r.text
    ds = r.json()["dataset_id"]
    species = train(http, ds, "species", target="species", algorithm="logistic_regression")
    width = train(http, ds, "width", target="petal_width", algorithm="linear_regression", features=FEATURES[:3])
    svc = bootstrap(Settings.from_env({**env, "KUBEPREDICT_DATA_DIR": str(gw.data_dir)}))
    yield {
        "gw": gw,
        "env": {**env, "KUBEPREDICT_DATA_DIR": str(gw.data_dir)},
        "svc": svc,
        "species": species,
        "width": width,
        "prefix": prefix,
        "bootstrap": kafka_broker.bootstrap,
    }
    svc.catalog.dispose()
    gw.stop()


def rows(n: int, start: int = 0) -> list[dict]:
    iris = pd.read_csv(IRIS)
    return iris[FEATURES].iloc[[(start + i) % len(iris) for i in range(n)]].to_dict(orient="records")


def request(model: str, instances: list[dict], event_id: str | None = None, **extra) -> dict:
    return {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": "/tests",
        "type": "test.score",
        "datacontenttype": "application/json",
        "data": {"model": model, "instances": instances, **extra},
    }


def expected(svc, model_id: str, instances: list[dict]):
    model = serving.resolve(svc, model_id)
    result = serving.score(svc, model, Table.from_records(instances))
    return model, result


def answers(bootstrap_servers: str, topic: str, n: int, committed: bool = True, timeout: float = 120) -> list:
    reader = TopicReader(bootstrap_servers, topic)
    if not committed:  # see aborted answers too: proves a crash really left some behind
        reader.consumer.close()
        from confluent_kafka import Consumer

        reader.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap_servers,
                "group.id": f"raw-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "isolation.level": "read_uncommitted",
            }
        )
        reader.consumer.subscribe([topic])
    try:
        reader.until(lambda ms: len(ms) >= n, timeout, f"{n} answers on {topic}")
        reader.poll(2.0)  # a duplicate would be here by now
        return reader.messages
    finally:
        reader.close()


def check_answer(svc, msg, req: dict) -> None:
    answer = json.loads(msg.value())
    data = req["data"]
    model, result = expected(svc, data["model"], data["instances"])
    assert msg.key() == req["id"].encode()
    assert answer["type"] == "kubepredict.prediction" and answer["subject"] == req["id"]
    body = answer["data"]
    assert body["request_id"] == req["id"]
    assert body["model_id"] == model.model_id and body["model_version"] == model.version
    assert body["predictions"] == pytest.approx(result.predictions.tolist())
    if result.probabilities is not None:
        assert np.allclose(body["probabilities"], result.probabilities, atol=1e-6)
        assert body["classes"] == result.classes
    else:
        assert "probabilities" not in body


def test_records_of_two_models_in_one_batch_are_answered_correctly(served):
    p, svc = served["prefix"], served["svc"]
    species, width = served["species"], served["width"]
    reqs = []
    for i in range(40):  # interleaved: one micro-batch holds both models
        if i % 2:
            reqs.append(request(species["model_id"], rows(1 + i % 7, start=i)))
        else:
            reqs.append(request(f"width/versions/{width['version']}", rows(3, start=i)))
    # by name: the model id is resolved by the scorer and reported in the answer
    reqs.append(request("species", rows(2, start=100)))
    produce(served["bootstrap"], f"{p}predict.stream", reqs)
    got = answers(served["bootstrap"], f"{p}predictions", len(reqs))
    assert len(got) == len(reqs), "one answer per request"
    by_key = {m.key(): m for m in got}
    assert len(by_key) == len(reqs)
    for req in reqs:
        check_answer(svc, by_key[req["id"].encode()], req)
    assert json.loads(by_key[reqs[-1]["id"].encode()].value())["data"]["model_id"] == species["model_id"]
    metrics = httpx.get(served["gw"].url + "/metrics").text
    answered = float(re.search(r'^kubepredict_stream_records_total\{outcome="answered"\} (\S+)$', metrics, re.M)[1])
    batches = float(re.search(r"^kubepredict_stream_batch_records_count (\S+)$", metrics, re.M)[1])
    assert answered == len(reqs)
    assert batches < len(reqs) / 2, f"{batches} micro-batches for {len(reqs)} records: not batched"


def test_bad_records_go_to_the_dead_letter_topic_and_the_rest_are_answered(served):
    p, svc, species = served["prefix"], served["svc"], served["species"]
    good_before = request(species["model_id"], rows(2), "good-before")
    good_after = request(species["model_id"], rows(2, start=50), "good-after")
    bad = [
        b"{not json",
        json.dumps([1, 2]).encode(),
        json.dumps(request("no-such-model", rows(1), "unknown-model")).encode(),
        json.dumps(request(species["model_id"], [{"sepal_length": 1.0}], "missing-columns")).encode(),
        json.dumps(request(species["model_id"], [{**rows(1)[0], "petal_width": "wide"}], "bad-value")).encode(),
        json.dumps(request(species["model_id"], rows(1001), "too-many-rows")).encode(),
        json.dumps({"specversion": "1.0", "id": "no-model", "data": {"instances": rows(1)}}).encode(),
        b'{"model": "m", "instances": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",  # was a RecursionError, forever
        json.dumps(request(species["model_id"], [{**rows(1)[0], "petal_width": "inf"}], "inf-value")).encode(),
    ]
    produce(
        served["bootstrap"],
        f"{p}predict.stream",
        [good_before, *bad, good_after],
        key=b"k",
        headers=[("trace", b"abc")],
    )
    dead = answers(served["bootstrap"], f"{p}dead-letter", len(bad))
    assert [m.value() for m in dead] == bad
    codes = [dict(m.headers())["kubepredict.error.code"].decode() for m in dead]
    statuses = [dict(m.headers())["kubepredict.error.status"].decode() for m in dead]
    assert codes == [
        "invalid_json",
        "invalid_request",
        "model_not_found",
        "missing_columns",
        "invalid_values",
        "payload_too_large",
        "invalid_model",
        "invalid_json",
        "invalid_values",
    ], codes
    assert statuses == ["400", "400", "404", "400", "400", "413", "400", "400", "400"]
    assert all(dict(m.headers())["trace"] == b"abc" and m.key() == b"k" for m in dead)
    assert dict(dead[0].headers())["kubepredict.original.topic"] == f"{p}predict.stream".encode()
    got = answers(served["bootstrap"], f"{p}predictions", 2)
    keys = [m.key() for m in got]
    assert b"good-before" in keys and b"good-after" in keys
    # the good ones behind the bad value, in the same batch, were scored on their own and answered
    for m in got:
        if m.key() in (b"good-before", b"good-after"):
            check_answer(svc, m, good_before if m.key() == b"good-before" else good_after)


def _scorer(env: dict, log, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "kubepredict.cli", "stream-scorer", "--instance", "killed", *args],
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )


def test_one_answer_per_request_after_the_scorer_is_killed_between_scoring_and_commit(served, tmp_path):
    svc, species = served["svc"], served["species"]
    p = served["prefix"] + "kill."  # own topics and group, not read by the gateway's embedded scorer
    env = kafka_env(
        served["bootstrap"],
        p,
        KUBEPREDICT_DATA_DIR=served["env"]["KUBEPREDICT_DATA_DIR"],
        KUBEPREDICT_KAFKA_OPTIONS="session.timeout.ms=6000,heartbeat.interval.ms=1000",
    )
    reqs = [request(species["model_id"], rows(1 + i % 3, start=i), f"req-{i}") for i in range(30)]
    produce(served["bootstrap"], f"{p}predict.stream", reqs)
    with open(tmp_path / "scorer.log", "ab") as log:
        first = _scorer(env, log, "--exit-after-produce", "1", "--max-messages", "10", "--max-wait-ms", "500")
        assert first.wait(120) == -signal.SIGKILL, (tmp_path / "scorer.log").read_text()
        raw = answers(served["bootstrap"], f"{p}predictions", 1, committed=False)
        assert raw, "the killed scorer had produced answers (left in an aborted transaction)"
        second = _scorer(env, log, "--max-messages", "10")
        try:
            got = answers(served["bootstrap"], f"{p}predictions", 30, timeout=180)
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(60) == 0, (tmp_path / "scorer.log").read_text()
    log_text = (tmp_path / "scorer.log").read_text()
    assert log_text.count("killing myself after producing") == 1
    keys = [m.key() for m in got]
    assert len(keys) == 30 and len(set(keys)) == 30, "exactly one committed answer per request id"
    for req, m in zip(reqs[:30], sorted(got, key=lambda m: int(m.key().split(b"-")[1])), strict=True):
        check_answer(svc, m, req)
    everything = answers(served["bootstrap"], f"{p}predictions", 30 + len(raw), committed=False)
    assert len(everything) > 30, "read_uncommitted shows the aborted copies: the crash happened mid-transaction"


def test_broker_restart_mid_stream_loses_no_answer_and_duplicates_none(served, request):
    from dataclasses import replace

    from kubepredict.events.stream import StreamScorer
    from tests.services.kafka import KafkaBroker

    broker = KafkaBroker().start()  # a private broker: this test stops it
    request.addfinalizer(broker.stop)
    p = served["prefix"] + "outage."
    svc = served["svc"]
    settings = replace(
        svc.settings,
        kafka_bootstrap_servers=broker.bootstrap,
        topic_predict_stream=f"{p}stream",
        topic_predictions=f"{p}predictions",
        topic_dead_letter=f"{p}dead-letter",
    )
    scorer = StreamScorer(
        replace(svc, settings=settings),
        group_id=f"{p}group",
        instance="outage",
        max_messages=50,
        max_backoff=2.0,
        stuck_after=20,
    ).start()
    request.addfinalizer(scorer.stop)
    model_id = served["species"]["model_id"]
    first = [request_(model_id, i) for i in range(20)]
    produce(broker.bootstrap, f"{p}stream", first)
    wait_for(lambda: scorer.answered >= 20, 120, "the first answers")
    second = [request_(model_id, i) for i in range(20, 1020)]
    produce(broker.bootstrap, f"{p}stream", second)
    wait_for(lambda: scorer.answered > 20, 60, "scoring of the second lot to start")
    broker.halt()  # most likely in the middle of a transaction
    broker.resume()
    got = answers(broker.bootstrap, f"{p}predictions", 1020, timeout=240)
    keys = [m.key() for m in got]
    assert len(keys) == 1020 and len(set(keys)) == 1020, "one committed answer per request id"
    by_key = {m.key(): m for m in got}
    for req in (first + second)[::97]:
        check_answer(svc, by_key[req["id"].encode()], req)


def request_(model_id: str, i: int) -> dict:
    return request(model_id, rows(1, start=i), f"req-{i}")


def test_a_loop_stuck_in_a_transaction_is_replaced_and_answers_stay_one_per_request(served, request):
    """The watchdog: a transactional call blocked past ``stuck_after`` (simulated by a hook that hangs after
    producing) gets a new loop; the stuck one is fenced and commits nothing."""
    import threading
    from dataclasses import replace

    from kubepredict.events.stream import StreamScorer

    p = served["prefix"] + "stuck."
    svc = served["svc"]
    settings = replace(
        svc.settings,
        kafka_bootstrap_servers=served["bootstrap"],
        topic_predict_stream=f"{p}stream",
        topic_predictions=f"{p}predictions",
        topic_dead_letter=f"{p}dead-letter",
    )
    release = threading.Event()
    request.addfinalizer(release.set)
    hung = []

    def hang_once(records):
        if not hung:
            hung.append(len(records))
            release.wait(30)

    scorer = StreamScorer(
        replace(svc, settings=settings),
        group_id=f"{p}group",
        instance="stuck",
        max_messages=10,
        after_produce=hang_once,
        stuck_after=3,
    )
    request.addfinalizer(scorer.stop)
    model_id = served["species"]["model_id"]
    reqs = [request_(model_id, i) for i in range(40)]
    produce(served["bootstrap"], f"{p}stream", reqs)
    scorer.start()
    wait_for(lambda: scorer.restarts == 1, 60, "the watchdog to replace the stuck loop")
    got = answers(served["bootstrap"], f"{p}predictions", 40, timeout=120)
    release.set()  # the stuck loop wakes up, finds itself replaced (and fenced), and commits nothing
    time.sleep(3)
    got = answers(served["bootstrap"], f"{p}predictions", 40, timeout=60)
    keys = [m.key() for m in got]
    assert hung and len(keys) == 40 and len(set(keys)) == 40, "one committed answer per request id"
    assert scorer.failed is None and scorer.restarts == 1
    by_key = {m.key(): m for m in got}
    for req in reqs[::7]:
        check_answer(svc, by_key[req["id"].encode()], req)
