"""Kafka end to end: request messages through the connector, events out through the relay, on the real broker."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.gateway_process import REPO

from .kafka_helpers import IRIS, TopicReader, cloudevent, kafka_env, produce, topics, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
JOB_EVENTS = [
    "kubepredict.job.queued",
    "kubepredict.job.started",
    "kubepredict.job.succeeded",
    "kubepredict.model.ready",
]


def upload(http: httpx.Client, name: str = "iris") -> str:
    r = http.post(
        "/function/upload", params={"name": name}, content=IRIS.read_bytes(), headers={"Content-Type": "text/csv"}
    )
    assert r.status_code == 201, r.text
    return r.json()["dataset_id"]


def train_body(dataset_id: str, **extra) -> dict:
    return {"dataset_id": dataset_id, "target": "species", "algorithm": "logistic_regression", **extra}


def jobs(http: httpx.Client) -> list[dict]:
    r = http.get("/function/result", params={"kind": "train", "limit": 100})
    assert r.status_code == 200, r.text
    return r.json()["jobs"]


def finished(http: httpx.Client, job_id: str) -> dict | None:
    job = http.get(f"/function/result/{job_id}", params={"limit": 0}).json()
    return job if job["status"] in ("succeeded", "failed", "cancelled") else None


def per_job(events: list[dict], job_id: str) -> list[dict]:
    """The job's events, first copy of each CloudEvent id only (what a deduplicating consumer sees)."""
    seen, out = set(), []
    for e in events:
        if e["subject"] == job_id and e["id"] not in seen:
            seen.add(e["id"])
            out.append(e)
    return out


def pending_metric(http: httpx.Client) -> float:
    text = http.get("/metrics").text
    return float(re.search(r"^kubepredict_events_pending (\S+)$", text, re.M).group(1))


def test_train_request_message_produces_a_model_and_its_events(start_gateway, kafka_bootstrap, kafka_topic_prefix):
    t = topics(kafka_topic_prefix)
    gw = start_gateway(kafka_env(kafka_bootstrap, kafka_topic_prefix))
    http = httpx.Client(base_url=gw.url, timeout=60)
    dataset_id = upload(http)
    produce(kafka_bootstrap, t["train"], [train_body(dataset_id, name="from-kafka")], key=dataset_id.encode())

    job = wait_for(lambda: jobs(http), 120, "the connector to queue a job")[0]
    assert job["dataset_id"] == dataset_id
    done = wait_for(lambda: finished(http, job["job_id"]), 240, "the job to finish")
    assert done["status"] == "succeeded", done
    model = http.get(f"/function/train/{job['model_id']}").json()
    assert model["status"] == "ready" and model["name"] == "from-kafka"

    reader = TopicReader(kafka_bootstrap, t["events"])
    try:
        reader.until(lambda ms: len(per_job(reader.events(), job["job_id"])) >= 4, 120, "the job's four events")
        reader.poll(2.0)  # anything published twice would be here by now
        mine = per_job(reader.events(), job["job_id"])
        raw = [m for m in reader.messages if m.key() == job["job_id"].encode()]
    finally:
        reader.close()
    assert [e["type"] for e in mine] == JOB_EVENTS
    assert len(raw) == 4, "each event published once"
    assert all(dict(m.headers())["content-type"] == b"application/cloudevents+json" for m in raw)
    uploaded = [e for e in reader.events() if e["type"] == "kubepredict.dataset.uploaded"]
    assert [e["subject"] for e in uploaded] == [dataset_id]
    wait_for(lambda: pending_metric(http) == 0, 60, "an empty outbox")


def _connector(env: dict, log, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "kubepredict.cli", "connector", *args],
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )


def _committed(bootstrap: str, group: str, topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        return c.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
    finally:
        c.close()


def test_duplicate_and_redelivered_messages_start_one_job_each(
    start_gateway, kafka_bootstrap, kafka_topic_prefix, tmp_path
):
    t = topics(kafka_topic_prefix)
    gw = start_gateway({"KUBEPREDICT_MAX_CONCURRENT_JOBS": "0"})  # queueing is enough here
    http = httpx.Client(base_url=gw.url, timeout=60)
    dataset_id = upload(http)
    # offset 0: a bare body (key = topic-partition-offset); offsets 1, 2: one CloudEvent delivered twice
    event = cloudevent(train_body(dataset_id, name="twice"))
    produce(kafka_bootstrap, t["train"], [train_body(dataset_id, name="bare"), event, event])

    env = kafka_env(
        kafka_bootstrap,
        kafka_topic_prefix,
        KUBEPREDICT_GATEWAY_URL=gw.url,
        KUBEPREDICT_KAFKA_OPTIONS="session.timeout.ms=6000,heartbeat.interval.ms=1000",
    )
    group = env["KUBEPREDICT_CONNECTOR_GROUP"]
    with open(tmp_path / "connector.log", "ab") as log:
        first = _connector(env, log, "--exit-after-invoke", "1")
        assert first.wait(120) == 3, (tmp_path / "connector.log").read_text()
        assert len(jobs(http)) == 1, "the first message was invoked once before the crash"
        assert _committed(kafka_bootstrap, group, t["train"]) < 0, "nothing committed before the crash"

        second = _connector(env, log)
        try:
            wait_for(
                lambda: _committed(kafka_bootstrap, group, t["train"]) == 3,
                180,
                "the second connector to commit all three messages",
            )
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(60) == 0
    log_text = (tmp_path / "connector.log").read_text()
    assert log_text.count("exiting after invoking") == 1
    names = sorted(http.get(f"/function/train/{j['model_id']}").json()["name"] for j in jobs(http))
    assert names == ["bare", "twice"], log_text


def test_malformed_request_goes_to_dead_letter_and_the_rest_flow(start_gateway, kafka_bootstrap, kafka_topic_prefix):
    t = topics(kafka_topic_prefix)
    gw = start_gateway(kafka_env(kafka_bootstrap, kafka_topic_prefix, KUBEPREDICT_MAX_CONCURRENT_JOBS="0"))
    http = httpx.Client(base_url=gw.url, timeout=60)
    dataset_id = upload(http)
    produce(
        kafka_bootstrap,
        t["train"],
        [b"{not json", {"dataset_id": "ds_0000000000000000", "target": "x"}, train_body(dataset_id, name="behind")],
        key=b"k1",
        headers=[("trace", b"abc")],
    )

    job = wait_for(lambda: jobs(http), 120, "the valid message behind the bad ones")[0]
    assert http.get(f"/function/train/{job['model_id']}").json()["name"] == "behind"
    reader = TopicReader(kafka_bootstrap, t["dead_letter"])
    try:
        reader.until(lambda ms: len(ms) >= 2, 60, "two dead letters")
        reader.poll(1.0)
        dead = reader.messages
    finally:
        reader.close()
    assert len(dead) == 2 and len(jobs(http)) == 1
    first, second = (dict(m.headers()) for m in dead)
    assert dead[0].value() == b"{not json" and dead[0].key() == b"k1"
    assert first["kubepredict.error.status"] == b"400" and first["kubepredict.error.code"] == b"invalid_json"
    assert first["kubepredict.original.topic"] == t["train"].encode()
    assert first["kubepredict.original.offset"] == b"0" and first["kubepredict.original.partition"] == b"0"
    assert first["trace"] == b"abc"
    assert json.loads(dead[1].value())["dataset_id"] == "ds_0000000000000000"
    assert second["kubepredict.error.status"] == b"404" and second["kubepredict.error.code"] == b"dataset_not_found"
    assert second["kubepredict.error.message"]


def test_broker_outage_delays_events_and_loses_none(start_gateway, kafka_broker, kafka_topic_prefix, request):
    from tests.services.kafka import KafkaBroker

    broker = KafkaBroker().start()  # a private broker: this test stops it
    request.addfinalizer(broker.stop)
    t = topics(kafka_topic_prefix)
    gw = start_gateway(kafka_env(broker.bootstrap, kafka_topic_prefix, KUBEPREDICT_MAX_CONCURRENT_JOBS="2"))
    http = httpx.Client(base_url=gw.url, timeout=60)
    datasets = [upload(http, "before")]
    wait_for(lambda: pending_metric(http) == 0, 60, "the first event published")

    broker.halt()
    started = time.monotonic()
    datasets += [upload(http, f"during-{i}") for i in range(2)]
    queued = []
    for ds in datasets:
        r = http.post("/function/train", json=train_body(ds))
        assert r.status_code == 202, r.text
        queued.append(r.json()["job_id"])
    for job_id in queued:
        assert (
            wait_for(lambda job_id=job_id: finished(http, job_id), 240, "jobs to finish without Kafka")["status"]
            == "succeeded"
        )
    assert http.get("/healthz").status_code == 200
    assert pending_metric(http) >= 2 + 4 * len(queued)
    down_for = time.monotonic() - started

    broker.resume()
    wait_for(lambda: pending_metric(http) == 0, 180, "the relay to catch up")
    reader = TopicReader(broker.bootstrap, t["events"])
    try:
        expected = {(ds, "kubepredict.dataset.uploaded") for ds in datasets}
        expected |= {(j, kind) for j in queued for kind in JOB_EVENTS}
        reader.until(
            lambda ms: expected <= {(e["subject"], e["type"]) for e in reader.events()},
            120,
            "every event after the outage",
        )
        for job_id in queued:
            assert [e["type"] for e in per_job(reader.events(), job_id)] == JOB_EVENTS
    finally:
        reader.close()
    relay_lines = [ln for ln in gw.log_tail(1000).splitlines() if "events.relay: Kafka unreachable" in ln]
    assert len(relay_lines) == 1, f"the relay logs the outage once (down {down_for:.0f} s): {relay_lines}"


def test_a_drifted_batch_prediction_publishes_model_drift_detected(start_gateway, kafka_bootstrap, kafka_topic_prefix):
    """The drift event goes out like every event: outbox, relay, the events topic (once, keyed by the job)."""
    from tests.e2e.api import Api, frame_csv
    from tests.unit.test_drift import IRIS as IRIS_FRAME
    from tests.unit.test_drift import iris_like

    t = topics(kafka_topic_prefix)
    gw = start_gateway(kafka_env(kafka_bootstrap, kafka_topic_prefix))
    api = Api(gw.url)
    train = api.upload(frame_csv(iris_like(1500, 1)), "drift-train")
    q = api.train(dataset_id=train["dataset_id"], target="species", algorithm="logistic_regression")
    assert api.wait(q["job_id"])["status"] == "succeeded"
    shifted = iris_like(500, 2)
    shifted["petal_length"] = shifted["petal_length"] + 3 * IRIS_FRAME["petal_length"].std()
    ds = api.upload(frame_csv(shifted), "drift-shifted")
    job = api.wait(api.predict(q["model_id"], ds["dataset_id"])["job_id"])
    assert job["status"] == "succeeded" and job["summary"]["drift"]["detected"], job["summary"].get("drift")

    reader = TopicReader(kafka_bootstrap, t["events"])
    try:
        reader.until(
            lambda ms: any(
                e["type"] == "kubepredict.model.drift_detected" for e in per_job(reader.events(), job["job_id"])
            ),
            120,
            "the drift event",
        )
        reader.poll(2.0)
        drifted = [
            e for e in per_job(reader.events(), job["job_id"]) if e["type"] == "kubepredict.model.drift_detected"
        ]
    finally:
        reader.close()
    assert len(drifted) == 1
    assert drifted[0]["data"]["model_id"] == q["model_id"]
    assert [f["feature"] for f in drifted[0]["data"]["features"]] == ["petal_length"]
