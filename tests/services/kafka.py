"""Kafka 4.1.1 single-node KRaft (broker+controller) on 127.0.0.1, from Maven jars.

The jars (kafka_2.13 runtime closure + log4j2 SLF4J binding) come from
scripts/setup-services.sh into ~/.cache/kubepredict/jars/kafka-4.1.1. The storage directory is
formatted with ``kafka.tools.StorageTool`` (static quorum, random cluster id),
then ``kafka.Kafka`` runs with a small heap. Ready when "Kafka Server started"
is logged and the PLAINTEXT port accepts connections.

    with KafkaBroker() as kafka:
        kafka.bootstrap                 # "127.0.0.1:PORT"
        prefix = kafka.topic_prefix()   # unique per test: use for topics and groups
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import uuid

from . import (
    JARS_DIR,
    LOOPBACK,
    SETUP_HINT,
    Service,
    ServiceUnavailable,
    free_port,
    port_open,
    require_java,
    tail,
    wait_until,
)

KAFKA_VERSION = "4.1.1"
KAFKA_LIBS = JARS_DIR / f"kafka-{KAFKA_VERSION}"

LOG4J2 = """\
status=warn
appender.c.type=Console
appender.c.name=C
appender.c.layout.type=PatternLayout
appender.c.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=INFO
rootLogger.appenderRef.c.ref=C
logger.kafka.name=kafka
logger.kafka.level=INFO
logger.ak.name=org.apache.kafka
logger.ak.level=INFO
"""


def new_cluster_id() -> str:
    """A Kafka Uuid: 16 random bytes, URL-safe base64, unpadded.

    One in 64 starts with "-", which StorageTool's argument parser takes for an
    option even as ``-t ID``: avoid those (and pass ``--cluster-id=ID`` anyway).
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


class KafkaBroker(Service):
    name = "kafka"
    start_timeout = 90.0
    port_attrs = ("port", "controller_port")
    heap = os.environ.get("KUBEPREDICT_KAFKA_HEAP", "512m")
    started_marker = re.compile(r"\[KafkaRaftServer nodeId=\d+\] Kafka Server started|Kafka Server started")

    def __init__(
        self,
        port: int | None = None,
        controller_port: int | None = None,
        extra_properties: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.port = port
        self.controller_port = controller_port
        self.extra_properties = dict(extra_properties or {})
        self.cluster_id: str | None = None

    @property
    def bootstrap(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def check_available(self) -> None:
        require_java()
        if not (KAFKA_LIBS / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file():
            raise ServiceUnavailable(f"Kafka {KAFKA_VERSION} jars missing ({KAFKA_LIBS}): {SETUP_HINT}")

    def _java(self, main: str, *args: str, heap: str = "256m") -> list[str]:
        assert self.tmpdir is not None
        # C1 only (TieredStopAtLevel=1): about halves start-up on a busy 2-core machine
        # (measured 8-10 s -> 3-5 s); throughput is irrelevant for tests
        return [
            "java",
            "-Xms64m",
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
            "-Djava.net.preferIPv4Stack=true",
            f"-Djava.io.tmpdir={self.tmpdir}",
            f"-Dlog4j2.configurationFile={self.tmpdir / 'log4j2.properties'}",
            "-cp",
            f"{KAFKA_LIBS}/*",
            main,
            *args,
        ]

    def _start(self) -> None:
        assert self.tmpdir is not None and self.log_path is not None
        self.port = self.port or free_port()
        self.controller_port = self.controller_port or free_port()
        while self.controller_port == self.port:
            self.controller_port = free_port()
        logs = self.tmpdir / "data"
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{LOOPBACK}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{LOOPBACK}:{self.port},CONTROLLER://{LOOPBACK}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{self.port},CONTROLLER://{LOOPBACK}:{self.controller_port}",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(logs),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "log.flush.interval.messages": "1000000",
        }
        props.update(self.extra_properties)
        conf = self.tmpdir / "server.properties"
        conf.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.tmpdir / "log4j2.properties").write_text(LOG4J2)

        self.cluster_id = new_cluster_id()
        with open(self.log_path, "ab") as log:
            subprocess.run(
                self._java(
                    "kafka.tools.StorageTool", "format", f"--cluster-id={self.cluster_id}", "--config", str(conf)
                ),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                check=True,
                timeout=120,
                cwd=self.tmpdir,
            )

        proc = self._spawn(self._java("kafka.Kafka", str(conf), heap=self.heap), cwd=self.tmpdir)
        wait_until(
            lambda: self.started_marker.search(tail(self.log_path, 400)),
            self.start_timeout,
            interval=0.2,
            what="'Kafka Server started' in the broker log",
            alive=self._alive(proc),
        )
        wait_until(lambda: port_open(self.port), 20, what=f"Kafka port {self.port}", alive=self._alive(proc))

    # -- outages: stop and start again on the same ports and data dir -------------
    def halt(self) -> None:
        """Stop the broker process (SIGTERM, controlled shutdown) but keep its data dir and ports."""
        for proc in list(self._procs):
            self._kill(proc)
        self._procs.clear()
        wait_until(lambda: not port_open(self.port), 30, what=f"Kafka port {self.port} to close")

    def resume(self) -> None:
        """Start the broker again after ``halt()``: same config, same data, same ports."""
        assert self.tmpdir is not None and self.log_path is not None, "resume() needs a started broker"
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0

        def started() -> bool:
            with open(self.log_path, "rb") as fh:
                fh.seek(offset)
                return bool(self.started_marker.search(fh.read().decode(errors="replace")))

        proc = self._spawn(
            self._java("kafka.Kafka", str(self.tmpdir / "server.properties"), heap=self.heap), cwd=self.tmpdir
        )
        wait_until(
            started,
            self.start_timeout,
            interval=0.2,
            what="'Kafka Server started' after resume",
            alive=self._alive(proc),
        )
        wait_until(lambda: port_open(self.port), 20, what=f"Kafka port {self.port}", alive=self._alive(proc))

    # -- per-test isolation -----------------------------------------------------
    @staticmethod
    def topic_prefix(label: str = "t") -> str:
        """Unique prefix for topic names and consumer groups of one test."""
        label = re.sub(r"[^A-Za-z0-9._-]+", "-", label)[:60].strip("-.") or "t"
        return f"{label}.{uuid.uuid4().hex[:8]}."

    def client_config(self) -> dict[str, str]:
        """Settings for any client: librdkafka/confluent-kafka style keys."""
        return {"bootstrap.servers": self.bootstrap}
