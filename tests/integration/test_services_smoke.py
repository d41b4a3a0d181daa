"""Smoke tests: each real backing service starts and does its basic job.

They need the services from scripts/setup-services.sh; without them they skip
(locally) or fail (CI=true). See tests/services/.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import urllib.error
import urllib.request

import pytest

from tests.services import free_port

pytestmark = pytest.mark.timeout(180)


# -- PostgreSQL -------------------------------------------------------------------
def test_postgres_roundtrip_with_sqlalchemy_psycopg(postgres_url):
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_url)
    try:
        assert engine.dialect.driver == "psycopg"
        meta = sa.MetaData()
        models = sa.Table(
            "models",
            meta,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("name", sa.String(100), nullable=False, unique=True),
            sa.Column("params", sa.JSON, nullable=False),
        )
        meta.create_all(engine)
        with engine.begin() as conn:
            conn.execute(
                models.insert(),
                [
                    {"name": "iris-logreg", "params": {"C": 1.0}},
                    {"name": "iris-tree", "params": {"max_depth": 3}},
                ],
            )
        with engine.connect() as conn:
            rows = conn.execute(sa.select(models.c.name, models.c.params).order_by(models.c.name)).all()
            version = conn.execute(sa.text("show server_version")).scalar()
        assert rows == [("iris-logreg", {"C": 1.0}), ("iris-tree", {"max_depth": 3})]
        assert version.startswith("15.")
        # the database really is fresh and ours: only the table we made
        assert sa.inspect(engine).get_table_names() == ["models"]
        with pytest.raises(sa.exc.IntegrityError):
            with engine.begin() as conn:
                conn.execute(models.insert(), {"name": "iris-tree", "params": {}})
    finally:
        engine.dispose()


# -- S3 -----------------------------------------------------------------------------
def test_s3_put_get_and_multipart(s3_bucket):
    from boto3.s3.transfer import TransferConfig

    s3 = s3_bucket["server"].client()
    bucket, prefix = s3_bucket["bucket"], s3_bucket["prefix"]
    assert s3_bucket["storage_url"] == f"s3://{bucket}/{prefix}"

    s3.put_object(Bucket=bucket, Key=f"{prefix}/hello.txt", Body=b"hello kubepredict")
    assert s3.get_object(Bucket=bucket, Key=f"{prefix}/hello.txt")["Body"].read() == b"hello kubepredict"

    # explicit multipart: 5 MiB + 5 MiB + 1.5 MiB parts
    mib = 1024 * 1024
    parts_data = [os.urandom(5 * mib), os.urandom(5 * mib), os.urandom(mib + mib // 2)]
    key = f"{prefix}/model.bin"
    up = s3.create_multipart_upload(Bucket=bucket, Key=key)
    parts = []
    for number, chunk in enumerate(parts_data, start=1):
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=number, Body=chunk)
        parts.append({"PartNumber": number, "ETag": r["ETag"]})
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up["UploadId"], MultipartUpload={"Parts": parts})
    whole = b"".join(parts_data)
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] == len(whole)
    assert head["ETag"].strip('"').endswith("-3")  # multipart ETag: md5-of-md5s-N
    got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert hashlib.sha256(got).digest() == hashlib.sha256(whole).digest()

    # managed transfer (what storage code would use) also goes multipart above 5 MiB
    cfg = TransferConfig(multipart_threshold=5 * mib, multipart_chunksize=5 * mib)
    import io

    s3.upload_fileobj(io.BytesIO(whole), bucket, f"{prefix}/managed.bin", Config=cfg)
    out = io.BytesIO()
    s3.download_fileobj(bucket, f"{prefix}/managed.bin", out, Config=cfg)
    assert out.getvalue() == whole

    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/")
    assert sorted(o["Key"] for o in listed["Contents"]) == [
        f"{prefix}/hello.txt",
        f"{prefix}/managed.bin",
        f"{prefix}/model.bin",
    ]


def test_s3_rejects_wrong_signature(s3_bucket):
    server = s3_bucket["server"]
    if not server.checks_signatures:
        pytest.skip(
            f"{server.name} does not check signatures (S3Proxy missing: {getattr(server, 'fallback_reason', '?')})"
        )
    from botocore.exceptions import ClientError

    bucket = s3_bucket["bucket"]
    good = server.client()
    good.put_object(Bucket=bucket, Key="secret.txt", Body=b"top")

    bad = server.client(secret_access_key="not-the-secret")
    with pytest.raises(ClientError) as err:
        bad.get_object(Bucket=bucket, Key="secret.txt")
    assert err.value.response["Error"]["Code"] in ("SignatureDoesNotMatch", "AccessDenied")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError):
        bad.put_object(Bucket=bucket, Key="intruder.txt", Body=b"x")
    unknown = server.client(access_key_id="nobody", secret_access_key="x")
    with pytest.raises(ClientError):
        unknown.list_objects_v2(Bucket=bucket)
    keys = [o["Key"] for o in good.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == ["secret.txt"]

    # presigned URLs: valid one works, tampered one is refused
    url = good.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "secret.txt"}, ExpiresIn=60)
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.read() == b"top"
    tampered = url.replace("secret.txt", "intruder.txt")
    with pytest.raises(urllib.error.HTTPError) as http_err:
        urllib.request.urlopen(tampered, timeout=10)
    assert http_err.value.code == 403


# -- Kafka ----------------------------------------------------------------------------
def test_kafka_produce_consume_in_order_with_group_commit(kafka_bootstrap, kafka_topic_prefix):
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = kafka_topic_prefix + "jobs"
    group = kafka_topic_prefix + "worker"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)

    delivered = []
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True, "acks": "all"})
    for i in range(10):
        producer.produce(
            topic,
            key=b"job",
            value=f"event-{i}".encode(),
            on_delivery=lambda err, msg: delivered.append(err or msg.offset()),
        )
    assert producer.flush(30) == 0
    assert delivered == list(range(10))

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.subscribe([topic])
        values = []
        for _ in range(60):
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            values.append(msg.value().decode())
            if len(values) == 10:
                break
        assert values == [f"event-{i}" for i in range(10)]
        consumer.commit(asynchronous=False)
        committed = consumer.committed([TopicPartition(topic, 0)], timeout=10)
        assert committed[0].offset == 10
    finally:
        consumer.close()

    # the group's committed offset is durable: a new member of the group gets nothing more
    again = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        assert again.committed([TopicPartition(topic, 0)], timeout=10)[0].offset == 10
    finally:
        again.close()


# -- Prometheus -----------------------------------------------------------------------
def test_prometheus_scrapes_our_target_and_sees_pushes(prometheus):
    from prometheus_client import CollectorRegistry, Counter, Gauge, push_to_gateway, start_http_server

    registry = CollectorRegistry()
    counter = Counter("kubepredict_smoke_requests", "Requests seen by the smoke test", ["function"], registry=registry)
    counter.labels("predict").inc(3)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        prometheus.set_scrape_targets("smoke", [f"127.0.0.1:{port}"])
        result = prometheus.query('kubepredict_smoke_requests_total{job="smoke",function="predict"}', timeout=45)
        assert float(result[0]["value"][1]) == 3.0
        assert result[0]["metric"]["instance"] == f"127.0.0.1:{port}"
        up = prometheus.query('up{job="smoke"}', timeout=10)
        assert up[0]["value"][1] == "1"
    finally:
        server.shutdown()
        server.server_close()

    pushed = CollectorRegistry()
    Gauge("kubepredict_smoke_batch_rows", "Rows in the last batch", registry=pushed).set(42)
    push_to_gateway(prometheus.pushgateway_address, job="smoke_batch", registry=pushed, timeout=10)
    result = prometheus.query('kubepredict_smoke_batch_rows{job="smoke_batch"}', timeout=45)
    assert float(result[0]["value"][1]) == 42.0


def test_promtool_check_metrics(promtool):
    good = (
        b"# HELP kubepredict_predictions_total Predictions served.\n"
        b"# TYPE kubepredict_predictions_total counter\n"
        b'kubepredict_predictions_total{model="iris"} 7\n'
    )
    ok = subprocess.run([promtool, "check", "metrics"], input=good, capture_output=True, timeout=30)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    broken = subprocess.run(
        [promtool, "check", "metrics"], input=b"not a metric line{\n", capture_output=True, timeout=30
    )
    assert broken.returncode != 0


def test_services_listen_on_loopback_only(postgres_server, s3_server, kafka_broker, prometheus_server):
    for svc in (postgres_server, s3_server, kafka_broker, prometheus_server):
        if not svc.pids() or svc.name == "moto":  # moto runs inside this process
            continue
        addrs = svc.listen_addresses()
        assert addrs, f"{svc.name}: no listening sockets found"
        assert all(a.startswith("127.0.0.1:") for a in addrs), f"{svc.name} listens on {addrs}"
